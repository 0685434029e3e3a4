"""MViTConfig: construction from Hydra, errors naming the key, plain-python round trip, stages and per-block plan."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mvit_video.config import build_config, compose
from mvit_video.models import MViTConfig, block_configs, round_width, stage_lists
from mvit_video.models.config import per_block_lists
from mvit_video.utils.errors import ConfigError


def _model(cfg) -> MViTConfig:
    """The MViTConfig the typed settings build from a composed config (model.*, mvit.*, data sizes)."""
    return build_config(cfg).model


def test_round_width_follows_pyslowfast():
    assert round_width(96, 2.0, divisor=4) == 192
    assert round_width(1, 2.0) == 2
    assert round_width(144, 2.0, divisor=8) == 288
    assert round_width(10, 1.5, divisor=8) == 16  # 15 -> 16 (nearest multiple, not below 90%)


def test_from_cfg_reads_model_mvit_and_data():
    cfg = compose(["mvit.depths=null", "mvit.depth=4", "mvit.pool_q_stride=[[1,1,2,2]]", "model.attention=plain",
                   "data.num_frames=4"])
    config = _model(cfg)
    assert config.depth == 4 and config.attention == "plain" and config.num_frames == 4
    assert config.crop_size == cfg.data.train_crop_size
    assert config.pool_q_stride == [[1, 1, 2, 2]] and isinstance(config.pool_q_stride[0], list)


@pytest.mark.slow
def test_depth_follows_depths():
    config = _model(compose(["mvit.depths=[1,3]"]))
    assert config.depths == [1, 3] and config.depth == 4 and len(block_configs(config)) == 4
    assert _model(compose(["mvit.depths=[1,3]", "mvit.depth=4"])).depth == 4  # agreeing: fine


def test_config_yaml_defaults_equal_dataclass_defaults():
    """conf/config.yaml is where the defaults live; MViTConfig keeps a copy for Python users who build
    `MViTConfig()` without Hydra. This test is the guard that keeps the two equal: every field against its key
    (mvit.*, model.*, data.num_frames / data.train_crop_size), and every mvit.* key is a field."""
    from mvit_video.settings import model_key

    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "config.yaml")
    defaults = {
        f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
        for f in dataclasses.fields(MViTConfig)
    }
    assert set(OmegaConf.to_container(cfg.mvit)) <= set(defaults)
    absent = object()
    for name, value in defaults.items():
        assert OmegaConf.select(cfg, model_key(name), default=absent) == value, model_key(name)


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
        (["mvit.depth=4"], "mvit.depth"),  # the default model's depths [1, 2, 2] sum to 5
        (["mvit.depths=null"], "mvit.depth"),  # neither set
        (["mvit.depths=[1,0,2]"], "mvit.depths"),
        (["mvit.depths=[]"], "mvit.depths"),
        (["mvit.depths=[1,2]", "mvit.dim_mul=[[4,2.0]]"], "mvit.dim_mul"),  # an explicit entry past depth 3
    ],
)
def test_config_error_names_the_key(overrides, key):
    cfg = compose(overrides)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _model(cfg)


def _experiment(name: str, *overrides: str) -> MViTConfig:
    return _model(compose([f"+experiment={name}", *overrides]))


def test_asdict_is_plain_python_and_round_trips_through_weights_only_load():
    config = _experiment("k400_s_16x4")
    d = dataclasses.asdict(config)
    buf = io.BytesIO()
    torch.save({"model_config": d}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["model_config"]
    assert MViTConfig.from_dict(loaded) == config
    with pytest.raises(ConfigError, match="bogus"):
        MViTConfig.from_dict({**d, "bogus": 1})


def test_model_config_of_older_checkpoints_builds_the_same_network():
    """Checkpoints written before `depths` existed hold depth and the explicit per-block lists (no depths key)."""
    config = _experiment("k400_s_16x4")
    old = {k: v for k, v in dataclasses.asdict(config).items() if k != "depths"}
    old.update(  # conf/model/mvit_s.yaml before (PySlowFast's MVITv2_S_16x4 lists)
        depth=16, pool_q_stride=[[i, 1, 2, 2] if i in (1, 3, 14) else [i, 1, 1, 1] for i in range(16)],
        dim_mul=[[1, 2.0], [3, 2.0], [14, 2.0]], head_mul=[[1, 2.0], [3, 2.0], [14, 2.0]],
    )
    loaded = MViTConfig.from_dict(old)
    assert loaded.depths is None and block_configs(loaded) == block_configs(config)


def test_block_plan_mvit_s():
    blocks = block_configs(_experiment("k400_s_16x4"))
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


@pytest.mark.parametrize(
    "name,starts,dims,heads",
    [("k400_b_32x3", [2, 5, 21], (96, 768), 8), ("k400_l_40x3_312", [2, 8, 44], (144, 1152), 16)],
)
def test_block_plan_b_and_l(name, starts, dims, heads):
    config = _experiment(name)
    blocks = block_configs(config)
    assert [i for i, b in enumerate(blocks) if b.dim_out != b.dim_in] == starts
    assert [i for i, b in enumerate(blocks) if b.stride_q == (1, 2, 2)] == starts
    assert (blocks[0].dim_in, blocks[-1].dim_out) == dims
    assert blocks[-1].num_heads == heads
    size = config.crop_size // 4
    assert blocks[-1].output_size == (config.num_frames // 2, size // 8, size // 8)


def test_stage_lists_are_pyslowfasts_per_block_form():
    assert stage_lists([1, 2, 2]) == {
        "pool_q_stride": [[0, 1, 1, 1], [1, 1, 2, 2], [2, 1, 1, 1], [3, 1, 2, 2], [4, 1, 1, 1]],
        "dim_mul": [[1, 2.0], [3, 2.0]],
        "head_mul": [[1, 2.0], [3, 2.0]],
    }
    assert stage_lists([3]) == {"pool_q_stride": [[0, 1, 1, 1], [1, 1, 1, 1], [2, 1, 1, 1]], "dim_mul": [],
                                "head_mul": []}


def test_explicit_per_block_lists_override_depths_each_on_its_own():
    base = dict(num_frames=8, crop_size=32, embed_dim=16, pool_kv_stride_adaptive=[1, 4, 4])
    staged = MViTConfig(depths=[1, 2], **base)
    assert per_block_lists(staged) == stage_lists([1, 2])
    # only dim_mul given: widths from it, q strides and heads still from depths
    mixed = MViTConfig(depths=[1, 2], dim_mul=[[2, 2.0]], **base)
    lists = per_block_lists(mixed)
    assert lists["dim_mul"] == [[2, 2.0]] and lists["pool_q_stride"] == stage_lists([1, 2])["pool_q_stride"]
    assert [b.dim_out for b in block_configs(mixed)] == [16, 16, 32]
    assert [b.num_heads for b in block_configs(mixed)] == [1, 2, 2]
    # an explicit empty list is "none", not "from depths"
    unpooled = MViTConfig(depths=[1, 2], pool_q_stride=[], **base)
    assert all(b.kernel_q is None for b in block_configs(unpooled))
    # without depths a None list is empty
    plain = MViTConfig(depth=3, **base)
    assert per_block_lists(plain) == {"pool_q_stride": [], "dim_mul": [], "head_mul": []}
    # the same network from depths and from the explicit lists
    explicit = MViTConfig(depth=3, **stage_lists([1, 2]), **base)
    assert block_configs(explicit) == block_configs(staged)


def test_replacing_depths_alone_is_refused_when_depth_disagrees():
    config = MViTConfig(depths=[1, 2], num_frames=8, crop_size=32)
    with pytest.raises(ConfigError, match=r"^depth: 3 but mvit\.depths \[2, 2\] sum to 4"):
        dataclasses.replace(config, depths=[2, 2])
    assert dataclasses.replace(config, depths=[2, 2], depth=None).depth == 4


def test_explicit_kv_strides_and_default_kernels():
    config = MViTConfig(
        depth=2, pool_kvq_kernel=None, pool_kv_stride_adaptive=None, pool_q_stride=[[1, 1, 2, 2]],
        pool_kv_stride=[[0, 1, 2, 2]], num_frames=4, crop_size=32,
    )
    b0, b1 = block_configs(config)
    assert b0.kernel_q is None and b0.kernel_kv == (1, 3, 3) and b0.stride_kv == (1, 2, 2)
    assert b1.kernel_q == (1, 3, 3) and b1.stride_q == (1, 2, 2) and b1.kernel_kv is None
