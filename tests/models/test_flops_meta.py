"""FLOPs from shapes alone (models.flops.count_gflops_meta, what `mvit-stats` uses): the same numbers as fvcore's
traced forward, and MViTv2-L's stats in seconds with the parameter count printed first (issue 20, item 4)."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch

from mvit_video.config import build_config, compose
from mvit_video.models import MViT, MViTConfig
from mvit_video.models.flops import _einsum_flops, count_gflops, count_gflops_meta, count_params
from mvit_video.stats import main as stats_main


def _meta(config: MViTConfig) -> MViT:
    with torch.device("meta"):
        return MViT(config)


def test_meta_count_counts_fused_attention_as_plain(tiny):
    config = tiny()
    meta = count_gflops_meta(_meta(config), (1, 3, 8, 32, 32))
    assert meta == pytest.approx(count_gflops_meta(_meta(dataclasses.replace(config, attention="plain")),
                                                   (1, 3, 8, 32, 32)), rel=0)
    assert meta > 0


def test_meta_count_refuses_a_real_model(tiny):
    with pytest.raises(ValueError, match="meta device"):
        count_gflops_meta(MViT(tiny()), (1, 3, 8, 32, 32))


def test_einsum_formula_is_fvcores():
    # the two closed forms, and numpy's optimal-path count halved (fvcore's einsum_flop_jit)
    assert _einsum_flops("bij,bik->bjk", [[2, 3, 4], [2, 3, 5]]) == 2 * 3 * 4 * 5
    assert _einsum_flops("nthw,nkw->nthk", [[2, 3, 4, 5], [2, 6, 5]]) == 2 * 3 * 4 * 6 * 5


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [[], ["model.attention=plain"], [  # MViTv2-S's 16 blocks at a smaller input
    "+experiment=k400_s_16x4", "data.num_frames=8", "data.train_crop_size=112", "data.test_crop_size=112"]])
def test_meta_count_equals_fvcore(overrides):
    run = build_config(compose(overrides))
    config = dataclasses.replace(run.model, crop_size=run.data.test_crop_size)
    shape = (1, 3, config.num_frames, config.crop_size, config.crop_size)
    assert count_gflops_meta(_meta(config), shape) == count_gflops(MViT(config), shape)


@pytest.mark.slow
def test_stats_of_mvit_l_in_seconds_params_first(capsys):
    start = time.process_time()
    stats_main(["+experiment=ssv2_l_40x3"])
    cpu = time.process_time() - start
    captured = capsys.readouterr()
    first = captured.err.splitlines()[0]
    assert first.startswith("ssv2_l_40x3: 213.13 M params; counting GFLOPs of one 40x312x312 view")
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result == {"params": 213129534, "gflops_per_view": 2828.1, "views": [1, 3]}  # k400_l's 2828 (README)
    assert cpu < 60, f"{cpu:.1f} CPU-s"


@pytest.mark.slow
def test_stats_fvcore_flag_traces_a_real_forward(capsys):
    from tiny import NETWORK

    stats_main([*NETWORK, "--fvcore"])
    captured = capsys.readouterr()
    assert "fvcore trace of a real forward" in captured.err
    meta = json.loads(captured.out.strip().splitlines()[-1])
    stats_main(list(NETWORK))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == meta


def test_meta_params_equal_real_params(tiny):
    assert count_params(_meta(tiny())) == count_params(MViT(tiny()))
