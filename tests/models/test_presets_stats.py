"""Presets reproduce the paper's table (params, GFLOPs), the yaml files agree with PRESETS, stats CLI output."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from mvit_video.config import compose
from mvit_video.models import MViT, MViTConfig
from mvit_video.models.flops import count_gflops, count_params, sdpa_flop_jit
from mvit_video.models.presets import PRESETS
from mvit_video.stats import main as stats_main


@pytest.mark.parametrize("name", ["k400_s", "k400_b", "k400_l", "ssv2_s", "ssv2_b", "ssv2_l"])
def test_param_counts_match_pyslowfast(name):
    preset = PRESETS[name]
    with torch.device("meta"):  # counts without allocating or running (L has 213 M parameters)
        model = MViT(preset.model_config())
    assert count_params(model) == pytest.approx(preset.reference_params, rel=0.002)


@pytest.mark.parametrize("name", ["mvit_t", "mvit_s", "mvit_b", "mvit_l", "mvit_h"])
def test_model_yaml_equals_preset_table(name):
    cfg = compose([f"model={name}"])
    preset = PRESETS[name]
    assert OmegaConf.to_container(cfg.mvit) == {**OmegaConf.to_container(cfg.mvit), **preset.mvit_section()}
    assert cfg.model.act_checkpoint == preset.act_checkpoint  # (num_classes: the data group sets it)
    config = MViTConfig.from_cfg(cfg)
    assert config.depth == preset.depth and config.droppath_rate == preset.droppath_rate


def test_gflops_mvit_s_matches_pyslowfast():
    preset = PRESETS["k400_s"]
    model = MViT(preset.model_config())
    gflops = count_gflops(model, (3, preset.num_frames, preset.crop_size, preset.crop_size))
    assert gflops == pytest.approx(preset.reference_gflops, rel=0.01)
    assert all(m.fused for m in model.modules() if hasattr(m, "fused"))  # restored after counting


def test_fused_model_counts_like_plain(tiny):
    config = tiny()
    fused = count_gflops(MViT(config), (1, 3, 8, 32, 32))
    plain = count_gflops(MViT(MViTConfig(**{**config.__dict__, "attention": "plain"})), (1, 3, 8, 32, 32))
    assert fused == pytest.approx(plain, rel=1e-9) and fused > 0


def test_sdpa_is_counted():
    from fvcore.nn import FlopCountAnalysis

    class Attn(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 4)
    analysis = FlopCountAnalysis(Attn(), (q, k, v)).set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False)
    assert analysis.total() == 2 * 3 * 10 * 6 * (8 + 4)


def test_stats_cli_prints_table_then_json(capsys):
    stats_main(["mvit.depth=2", "mvit.pool_q_stride=[[1,1,2,2]]", "mvit.dim_mul=[[1,2.0]]", "mvit.head_mul=[]", "test.num_ensemble_views=4", "test.num_spatial_crops=3"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == {"params", "gflops_per_view", "views"}
    assert result["views"] == [4, 3] and isinstance(result["params"], int) and result["gflops_per_view"] > 0
    assert any("GFLOPs x views" in line and "x 4 x 3" in line for line in lines)


def test_stats_cli_bad_key_is_one_line_error(capsys):
    with pytest.raises(SystemExit) as exc:
        stats_main(["+mvit.depht=3"])
    assert exc.value.code == 2
    assert "mvit.depht" in capsys.readouterr().err


@pytest.mark.parametrize(
    "experiment",
    ["k400_s_16x4", "k400_b_32x3", "k400_l_40x3_312", "k600_b_32x3", "k700_l_40x3_312", "ssv2_s_16x4", "ssv2_b_32x3",
     "ssv2_l_40x3"],
)
def test_experiment_files_build_the_preset(experiment):
    """The engine's +experiment files and PRESETS describe the same network (what stats reports)."""
    cfg = compose([f"+experiment={experiment}"])
    preset = PRESETS["_".join(experiment.split("_")[:2])]
    assert MViTConfig.from_cfg(cfg) == preset.model_config()
    assert [cfg.test.num_ensemble_views, cfg.test.num_spatial_crops] == list(preset.views)
    assert cfg.data.sampling_rate == preset.sampling_rate
