"""MViTConfig: construction from Hydra, errors naming the key, plain-python round trip, per-block plan."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mvit_video.config import compose
from mvit_video.models import MViTConfig, block_configs, round_width
from mvit_video.models.presets import PRESETS
from mvit_video.utils.errors import ConfigError


def test_round_width_follows_pyslowfast():
    assert round_width(96, 2.0, divisor=4) == 192
    assert round_width(1, 2.0) == 2
    assert round_width(144, 2.0, divisor=8) == 288
    assert round_width(10, 1.5, divisor=8) == 16  # 15 -> 16 (nearest multiple, not below 90%)


def test_from_cfg_reads_model_mvit_and_data():
    cfg = compose(["mvit.depth=4", "mvit.pool_q_stride=[[1,1,2,2]]", "model.attention=plain", "data.num_frames=4"])
    config = MViTConfig.from_cfg(cfg)
    assert config.depth == 4 and config.attention == "plain" and config.num_frames == 4
    assert config.crop_size == cfg.data.train_crop_size
    assert config.pool_q_stride == [[1, 1, 2, 2]] and isinstance(config.pool_q_stride[0], list)


def test_config_yaml_defaults_equal_dataclass_defaults():
    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "config.yaml")
    defaults = MViTConfig()
    for key, value in OmegaConf.to_container(cfg.mvit).items():
        assert getattr(defaults, key) == value, key
    assert cfg.model.attention == defaults.attention and cfg.model.dropout_rate == defaults.dropout_rate


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["+mvit.depht=3"], "mvit.depht"),
        (["mvit.mode=median"], "mvit.mode"),
        (["mvit.pool_q_stride=[[99,1,2,2]]"], "mvit.pool_q_stride"),
        (["mvit.dim_mul=[[1]]"], "mvit.dim_mul"),
        (["mvit.patch_stride=[2,4]"], "mvit.patch_stride"),
        (["model.attention=flash"], "model.attention"),
        (["model.num_classes=0"], "model.num_classes"),
        (["data.train_crop_size=62"], "data.train_crop_size"),
        (["mvit.pool_first=true"], "mvit.pool_first"),
    ],
)
def test_config_error_names_the_key(overrides, key):
    cfg = compose(overrides)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        MViTConfig.from_cfg(cfg)


def test_asdict_is_plain_python_and_round_trips_through_weights_only_load():
    config = PRESETS["k400_s"].model_config()
    d = dataclasses.asdict(config)
    buf = io.BytesIO()
    torch.save({"model_config": d}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["model_config"]
    assert MViTConfig.from_dict(loaded) == config
    with pytest.raises(ConfigError, match="bogus"):
        MViTConfig.from_dict({**d, "bogus": 1})


def test_block_plan_mvit_s():
    blocks = block_configs(PRESETS["k400_s"].model_config())
    assert len(blocks) == 16
    assert [b.dim_out for b in blocks] == [96] + [192] * 2 + [384] * 11 + [768] * 2
    assert [b.num_heads for b in blocks] == [1] + [2] * 2 + [4] * 11 + [8] * 2
    assert all(b.head_dim == 96 for b in blocks)
    assert [b.stride_q for b in blocks if b.stride_q != (1, 1, 1)] == [(1, 2, 2)] * 3
    assert [i for i, b in enumerate(blocks) if b.stride_q != (1, 1, 1)] == [1, 3, 14]
    # kv stride starts at (1, 8, 8) and shrinks with every q stride, so k/v stay 8x7x7 tokens.
    assert [b.stride_kv for b in blocks[:4]] == [(1, 8, 8), (1, 4, 4), (1, 4, 4), (1, 2, 2)]
    assert blocks[-1].stride_kv == (1, 1, 1) and blocks[-1].kernel_kv == (3, 3, 3)
    assert all(b.kernel_q == (3, 3, 3) for b in blocks)  # q pooled (stride 1) in every block
    assert blocks[0].input_size == (8, 56, 56) and blocks[-1].output_size == (8, 7, 7)
    assert blocks[0].drop_path == 0.0 and blocks[-1].drop_path == pytest.approx(0.2)


@pytest.mark.parametrize("name,starts,dims", [("k400_b", [2, 5, 21], (96, 768)), ("k400_l", [2, 8, 44], (144, 1152))])
def test_block_plan_b_and_l(name, starts, dims):
    preset = PRESETS[name]
    blocks = block_configs(preset.model_config())
    assert [i for i, b in enumerate(blocks) if b.dim_out != b.dim_in] == starts
    assert (blocks[0].dim_in, blocks[-1].dim_out) == dims
    assert blocks[-1].num_heads == preset.num_heads * 8
    size = preset.crop_size // 4
    assert blocks[-1].output_size == (preset.num_frames // 2, size // 8, size // 8)


def test_explicit_kv_strides_and_default_kernels():
    config = MViTConfig(
        depth=2, pool_kvq_kernel=None, pool_kv_stride_adaptive=None, pool_q_stride=[[1, 1, 2, 2]],
        pool_kv_stride=[[0, 1, 2, 2]], num_frames=4, crop_size=32,
    )
    b0, b1 = block_configs(config)
    assert b0.kernel_q is None and b0.kernel_kv == (1, 3, 3) and b0.stride_kv == (1, 2, 2)
    assert b1.kernel_q == (1, 3, 3) and b1.stride_q == (1, 2, 2) and b1.kernel_kv is None
