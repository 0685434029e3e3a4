"""Weights in: torchvision mvit_v2_s and PySlowFast MViTv2 checkpoints convert and reproduce the source outputs."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models.video import mvit_v2_s
from torchvision.models.video.mvit import MSBlockConfig, MViT as TorchvisionMViT

from mvit_video.checkpoint import load_checkpoint_info, load_model
from mvit_video.models import MViT, MViTConfig
from mvit_video.checkpoint import load_state_dict_strict
from mvit_video.models.convert import (
    config_from_slowfast_yaml,
    from_slowfast,
    from_torchvision,
    parse_slowfast_yaml,
    slowfast_input_is_bgr,
    torchvision_config,
    torchvision_input_size,
    torchvision_mvit,
)
from mvit_video.utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def random_weights(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values for every entry of model's state dict (norm scales near 1), so no weight can be mapped
    wrongly unnoticed. `model` may live on the meta device."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in model.state_dict().items():
        noise = torch.randn(t.shape, generator=g)
        is_norm_scale = t.dim() == 1 and "norm" in name and name.endswith("weight")
        out[name] = 1.0 + 0.2 * noise if is_norm_scale else 0.1 * noise
    return out


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Load random_weights into model."""
    model.load_state_dict(random_weights(model, seed))
    return model


@pytest.fixture(scope="module")
def cli():
    """mvit_video.convert_checkpoint (in-process runs skip the interpreter start-up)."""
    import mvit_video.convert_checkpoint

    return mvit_video.convert_checkpoint


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return subprocess.run(
        [sys.executable, "-m", "mvit_video.convert_checkpoint", *args], capture_output=True, text=True, cwd=REPO, env=env,
        timeout=120,
    )


# ---------------------------------------------------------------------------------------------------------------
# torchvision
# ---------------------------------------------------------------------------------------------------------------


def tiny_torchvision_pair() -> tuple[torch.nn.Module, MViTConfig]:
    """A 4-block torchvision MViT (mvit_v2_s's options, block settings written by hand) and our config for it."""
    def block(heads, cin, cout, sq, skv):
        return MSBlockConfig(heads, cin, cout, [3, 3, 3], [3, 3, 3], sq, skv)

    settings = [
        block(1, 16, 16, [1, 1, 1], [1, 4, 4]),
        block(2, 16, 32, [1, 2, 2], [1, 2, 2]),
        block(2, 32, 32, [1, 1, 1], [1, 2, 2]),
        block(4, 32, 64, [1, 2, 2], [1, 1, 1]),
    ]
    reference = TorchvisionMViT(
        spatial_size=(32, 32), temporal_size=8, block_setting=settings, residual_pool=True,
        residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True, num_classes=7,
    )  # fmt: skip
    config = MViTConfig(
        num_classes=7, num_frames=8, crop_size=32, depth=4, embed_dim=16, num_heads=1,
        dim_mul=[[1, 2.0], [3, 2.0]], head_mul=[[1, 2.0], [3, 2.0]],
        pool_q_stride=[[0, 1, 1, 1], [1, 1, 2, 2], [2, 1, 1, 1], [3, 1, 2, 2]],
        pool_kv_stride_adaptive=[1, 4, 4], pool_kvq_kernel=[3, 3, 3],
    )  # fmt: skip
    return randomize_(reference).eval(), config


@pytest.mark.parametrize("attention", ["fused", "plain"])
def test_torchvision_parity(attention):
    reference, config = tiny_torchvision_pair()
    config = dataclasses.replace(config, attention=attention)
    model = MViT(config).eval()
    load_state_dict_strict(model, from_torchvision(reference.state_dict()), source="torchvision")
    x = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert expected.abs().max() > 0.1  # the check below is not vacuous
    assert (expected - got).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_torchvision_config_is_mvit_v2_s():
    """torchvision_config() builds exactly mvit_v2_s: same weights and shapes, same pooling per block."""
    with torch.device("meta"):  # shapes only: no memory, no init time
        reference = mvit_v2_s()
        rebuilt = torchvision_mvit(torchvision_config())
        ours = {k: tuple(v.shape) for k, v in MViT(torchvision_config()).state_dict().items()}
    converted = {k: tuple(v.shape) for k, v in from_torchvision(reference.state_dict()).items()}
    assert converted == ours
    assert sum(v.numel() for v in reference.parameters()) == 34537744  # torchvision's meta["num_params"]
    for a, b in zip(reference.blocks, rebuilt.blocks):
        for name in ("pool_q", "pool_k", "pool_v"):
            pa, pb = getattr(a.attn, name), getattr(b.attn, name)
            assert (pa.pool.kernel_size, pa.pool.stride) == (pb.pool.kernel_size, pb.pool.stride)
        assert (a.pool_skip is None) == (b.pool_skip is None)
    assert torchvision_input_size(reference.state_dict()) == (16, 224)


def test_from_torchvision_class_token_and_refusals():
    reference, _ = tiny_torchvision_pair()
    sd = reference.state_dict()
    out = from_torchvision(sd)
    assert out["cls_token"].shape == (1, 1, 16)
    assert torch.equal(out["cls_token"].flatten(), sd["pos_encoding.class_token"])
    assert torch.equal(out["head.projection.weight"], sd["head.1.weight"])
    with pytest.raises(UserError, match="blocks.0.attn.extra"):
        from_torchvision({**sd, "blocks.0.attn.extra": torch.zeros(1)})
    with pytest.raises(UserError, match="mvit_v1_b"):
        from_torchvision({**sd, "pos_encoding.temporal_pos": torch.zeros(4, 16)})


@pytest.mark.slow
def test_torchvision_cli_verify(tmp_path, cli, capsys):
    """Full-depth mvit_v2_s at 4x32^2 through the CLI: input size read off the weights, logits compared."""
    src, dst = tmp_path / "mvit_v2_s.pth", tmp_path / "converted.pyth"
    with torch.device("meta"):
        reference = torchvision_mvit(torchvision_config(4, 32))
    torch.save(random_weights(reference), src)
    cli.main(["--from", "torchvision", "--verify", str(src), str(dst)])
    verify_line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("verify:")]
    diff = float(verify_line[0].split("=")[-1])
    assert diff <= 1e-4
    info = load_checkpoint_info(dst)
    assert info["model_config"]["num_frames"] == 4 and info["model_config"]["crop_size"] == 32
    assert len(info["class_names"]) == 400 and info["class_names"][0] == "abseiling"
    assert info["data_config"]["sampling_rate"] == 4 and info["data_config"]["mean"] == [0.45] * 3
    # A size that contradicts the weights' rel-pos tables is refused before anything is built.
    with pytest.raises(SystemExit):
        cli.main(["--from", "torchvision", "--num-frames", "16", str(src), str(tmp_path / "other.pyth")])
    assert "--num-frames 16 does not match the weights" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# PySlowFast
# ---------------------------------------------------------------------------------------------------------------

# A tiny MViTv2 written the way PySlowFast's yaml files are (tuples as strings, "1e-6", a key given twice).
SLOWFAST_TINY_YAML = """\
TRAIN:
  ENABLE: True
  DATASET: kinetics
DATA:
  USE_OFFSET_SAMPLING: True
  NUM_FRAMES: 4
  SAMPLING_RATE: 2
  TRAIN_JITTER_SCALES: [256, 320]
  TRAIN_CROP_SIZE: 32
  TEST_CROP_SIZE: 32
  INPUT_CHANNEL_NUM: [3]
MVIT:
  ZERO_DECAY_POS_CLS: False
  USE_ABS_POS: False
  REL_POS_SPATIAL: True
  REL_POS_TEMPORAL: True
  DEPTH: 3
  NUM_HEADS: 1
  EMBED_DIM: 16
  PATCH_KERNEL: (3, 7, 7)
  PATCH_STRIDE: (2, 4, 4)
  PATCH_PADDING: (1, 3, 3)
  MLP_RATIO: 4.0
  QKV_BIAS: True
  DROPPATH_RATE: 0.1
  NORM: "layernorm"
  MODE: "conv"
  CLS_EMBED_ON: True
  DIM_MUL: [[1, 2.0]]
  HEAD_MUL: [[1, 2.0]]
  POOL_KVQ_KERNEL: [3, 3, 3]
  POOL_KV_STRIDE_ADAPTIVE: [1, 2, 2]
  POOL_Q_STRIDE: [[0, 1, 1, 1], [1, 1, 2, 2], [2, 1, 1, 1]]
  POOL_KV_STRIDE_ADAPTIVE: [1, 4, 4]
  DROPOUT_RATE: 0.0
  DIM_MUL_IN_ATT: True
  RESIDUAL_POOLING: True
SOLVER:
  COSINE_END_LR: 1e-6
MODEL:
  NUM_CLASSES: 5
  ARCH: mvit
  MODEL_NAME: MViT
  LOSS_FUNC: soft_cross_entropy
  DROPOUT_RATE: 0.5
TEST:
  ENABLE: True
  DATASET: kinetics
  NUM_ENSEMBLE_VIEWS: 5
"""

# Per block: (dim_in, dim_out, head_dim, rel_pos_h/w rows, rel_pos_t rows), worked out by hand from PySlowFast's
# rules for the yaml above (patch grid 2x8x8; kv strides 1x4x4, 1x2x2, 1x2x2; q stride 1x2x2 at block 1).
SLOWFAST_TINY_BLOCKS = [(16, 16, 16, 15, 3), (16, 32, 16, 7, 3), (32, 32, 16, 7, 3)]


def slowfast_tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under PySlowFast's key names and shapes for SLOWFAST_TINY_YAML (independent of our model)."""
    g = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, ...]] = {"cls_token": (1, 1, 16), "patch_embed.proj.weight": (16, 3, 3, 7, 7)}
    shapes["patch_embed.proj.bias"] = (16,)
    for i, (din, dout, hd, rows, rows_t) in enumerate(SLOWFAST_TINY_BLOCKS):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (din,), b + "norm1.bias": (din,)})
        shapes.update({b + "attn.qkv.weight": (3 * dout, din), b + "attn.qkv.bias": (3 * dout,)})
        shapes.update({b + "attn.proj.weight": (dout, dout), b + "attn.proj.bias": (dout,)})
        for n in "qkv":
            shapes[b + f"attn.pool_{n}.weight"] = (hd, 1, 3, 3, 3)
            shapes.update({b + f"attn.norm_{n}.weight": (hd,), b + f"attn.norm_{n}.bias": (hd,)})
        shapes.update({b + "attn.rel_pos_h": (rows, hd), b + "attn.rel_pos_w": (rows, hd)})
        shapes[b + "attn.rel_pos_t"] = (rows_t, hd)
        shapes.update({b + "norm2.weight": (dout,), b + "norm2.bias": (dout,)})
        shapes.update({b + "mlp.fc1.weight": (4 * dout, dout), b + "mlp.fc1.bias": (4 * dout,)})
        shapes.update({b + "mlp.fc2.weight": (dout, 4 * dout), b + "mlp.fc2.bias": (dout,)})
        if din != dout:
            shapes.update({b + "proj.weight": (dout, din), b + "proj.bias": (dout,)})
    shapes.update({"norm.weight": (32,), "norm.bias": (32,)})
    shapes.update({"head.projection.weight": (5, 32), "head.projection.bias": (5,)})
    out = {}
    for key, shape in shapes.items():
        noise = torch.randn(shape, generator=g)
        out[key] = 1.0 + 0.2 * noise if "norm" in key and key.endswith("weight") else 0.1 * noise
    return out


def write_pyth(path: Path, state_dict: dict, cfg: str | None = SLOWFAST_TINY_YAML) -> Path:
    """A checkpoint laid out as PySlowFast saves it (DDP `module.` prefix, as some released files have)."""
    ckpt = {"epoch": 200, "model_state": {f"module.{k}": v for k, v in state_dict.items()}, "optimizer_state": {}}
    if cfg is not None:
        ckpt["cfg"] = cfg
    torch.save(ckpt, path)
    return path


@pytest.mark.slow  # runs the converter CLI in a subprocess (~2 s of imports)
def test_slowfast_checkpoint_converts_and_matches(tmp_path):
    source = slowfast_tiny_state_dict()
    src = write_pyth(tmp_path / "tiny.pyth", source)
    dst = tmp_path / "tiny_converted.pyth"
    names = tmp_path / "classes.txt"
    names.write_text("a\nb\nc\nd\ne\n")
    result = run_cli("--from", "slowfast", "--class-names", str(names), str(src), str(dst))
    assert result.returncode == 0, result.stderr
    model = load_model(dst)
    assert not model.training
    info = load_checkpoint_info(dst)
    assert info["class_names"] == ["a", "b", "c", "d", "e"]
    assert info["data_config"]["num_frames"] == 4 and info["data_config"]["sampling_rate"] == 2
    assert info["source"]["epoch"] == 200

    # The source weights in our plain reference path give the same logits as the converted checkpoint.
    config, _ = config_from_slowfast_yaml(SLOWFAST_TINY_YAML)
    reference = MViT(dataclasses.replace(config, attention="plain")).eval()
    reference.load_state_dict(source, strict=True)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (reference(x) - model(x)).abs().max().item() <= 1e-4


def test_slowfast_bgr_input_folded_into_weights():
    """DATA.REVERSE_INPUT_CHANNEL (PySlowFast's SSv2 configs): the source saw BGR; the converted model takes RGB."""
    line = "  INPUT_CHANNEL_NUM: [3]\n"
    bgr_yaml = SLOWFAST_TINY_YAML.replace(line, line + "  REVERSE_INPUT_CHANNEL: True\n")
    assert slowfast_input_is_bgr(bgr_yaml) and not slowfast_input_is_bgr(SLOWFAST_TINY_YAML)
    source = slowfast_tiny_state_dict()
    config = dataclasses.replace(config_from_slowfast_yaml(bgr_yaml)[0], attention="plain")
    reference, converted = MViT(config).eval(), MViT(config).eval()
    reference.load_state_dict(source)
    converted.load_state_dict(from_slowfast(source, reverse_input_channel=True))
    rgb = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (reference(rgb.flip(1)) - converted(rgb)).abs().max().item() <= 1e-5


@pytest.mark.slow  # runs the converter CLI in a subprocess (~2 s of imports)
def test_ssv2_reverse_input_channel_reproduces_slowfast_inputs(tmp_path):
    """PySlowFast's SSv2 loader reads BGR JPEGs (OpenCV), normalises them with the RGB-ordered DATA.MEAN/STD,
    then REVERSE_INPUT_CHANNEL reverses them: its network saw RGB with R normalised by (0.406, 0.225). The
    converted checkpoint takes RGB (no kernel flip) and carries the statistics that reproduce those inputs."""
    yaml_text = (
        SLOWFAST_TINY_YAML.replace("DATASET: kinetics", "DATASET: ssv2")
        .replace("  INPUT_CHANNEL_NUM: [3]\n", "  INPUT_CHANNEL_NUM: [3]\n  REVERSE_INPUT_CHANNEL: True\n"
                 "  MEAN: [0.485, 0.456, 0.406]\n  STD: [0.229, 0.224, 0.225]\n")
    )  # fmt: skip
    assert not slowfast_input_is_bgr(yaml_text)
    source = slowfast_tiny_state_dict()
    src = write_pyth(tmp_path / "ssv2_l.pyth", source, cfg=yaml_text)
    dst = tmp_path / "ssv2_l_converted.pyth"
    result = run_cli("--from", "slowfast", str(src), str(dst))
    assert result.returncode == 0, result.stderr
    data_config = load_checkpoint_info(dst)["data_config"]
    assert data_config["mean"] == [0.406, 0.456, 0.485] and data_config["std"] == [0.225, 0.224, 0.229]

    rgb = torch.randint(0, 256, (4, 32, 32, 3), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    # PySlowFast: BGR read, tensor_normalize with the lists as given, T H W C -> C T H W, channels reversed
    bgr = rgb.flip(-1).float() / 255.0
    pysf = ((bgr - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])).permute(3, 0, 1, 2)
    pysf = pysf[[2, 1, 0]].unsqueeze(0)
    ours = (rgb.float() / 255.0 - torch.tensor(data_config["mean"])) / torch.tensor(data_config["std"])
    ours = ours.permute(3, 0, 1, 2).unsqueeze(0)
    config = dataclasses.replace(config_from_slowfast_yaml(yaml_text)[0], attention="plain")
    reference = MViT(config).eval()
    reference.load_state_dict(source)
    with torch.no_grad():
        assert (reference(pysf) - load_model(dst)(ours)).abs().max().item() <= 1e-4


def test_slowfast_config_from_yaml():
    config, data = config_from_slowfast_yaml(SLOWFAST_TINY_YAML)
    assert config.patch_kernel == [3, 7, 7] and config.patch_padding == [1, 3, 3]  # "(3, 7, 7)" strings decoded
    assert config.pool_kv_stride_adaptive == [1, 4, 4]  # key written twice: the later value wins
    assert (config.depth, config.embed_dim, config.num_classes, config.dropout_rate) == (3, 16, 5, 0.5)
    assert (config.num_frames, config.crop_size) == (4, 32)
    assert data == {
        "num_frames": 4, "sampling_rate": 2, "target_fps": 30, "train_crop_size": 32, "test_crop_size": 32,
        "mean": [0.45] * 3, "std": [0.225] * 3, "dataset": "kinetics", "use_offset_sampling": True,
        "train_jitter_scales": [256, 320],
    }  # fmt: skip
    config, data = config_from_slowfast_yaml(SLOWFAST_TINY_YAML, num_frames=8, crop_size=64)
    assert (config.num_frames, config.crop_size, data["test_crop_size"]) == (8, 64, 64)


def test_slowfast_s_yaml_equals_mvit_v2_s():
    """PySlowFast's MVITv2_S_16x4.yaml (MVIT part as released) is torchvision's mvit_v2_s network."""
    yaml_text = """\
DATA:
  NUM_FRAMES: 16
  SAMPLING_RATE: 4
  TRAIN_CROP_SIZE: 224
  TEST_CROP_SIZE: 224
MVIT:
  ZERO_DECAY_POS_CLS: False
  USE_ABS_POS: False
  REL_POS_SPATIAL: True
  REL_POS_TEMPORAL: True
  DEPTH: 16
  NUM_HEADS: 1
  EMBED_DIM: 96
  PATCH_KERNEL: (3, 7, 7)
  PATCH_STRIDE: (2, 4, 4)
  PATCH_PADDING: (1, 3, 3)
  MLP_RATIO: 4.0
  QKV_BIAS: True
  DROPPATH_RATE: 0.2
  NORM: "layernorm"
  MODE: "conv"
  CLS_EMBED_ON: True
  DIM_MUL: [[1, 2.0], [3, 2.0], [14, 2.0]]
  HEAD_MUL: [[1, 2.0], [3, 2.0], [14, 2.0]]
  POOL_KVQ_KERNEL: [3, 3, 3]
  POOL_KV_STRIDE_ADAPTIVE: [1, 8, 8]
  POOL_Q_STRIDE: [[0, 1, 1, 1], [1, 1, 2, 2], [2, 1, 1, 1], [3, 1, 2, 2], [4, 1, 1, 1], [5, 1, 1, 1], [6, 1, 1, 1], [7, 1, 1, 1], [8, 1, 1, 1], [9, 1, 1, 1], [10, 1, 1, 1], [11, 1, 1, 1], [12, 1, 1, 1], [13, 1, 1, 1], [14, 1, 2, 2], [15, 1, 1, 1]]
  DROPOUT_RATE: 0.0
  DIM_MUL_IN_ATT: True
  RESIDUAL_POOLING: True
MODEL:
  NUM_CLASSES: 400
  ARCH: mvit
  MODEL_NAME: MViT
  DROPOUT_RATE: 0.5
"""
    config, _ = config_from_slowfast_yaml(yaml_text)
    assert dataclasses.asdict(config) == dataclasses.asdict(torchvision_config(16, 224, 400))


def test_slowfast_yaml_base_and_defaults(tmp_path):
    (tmp_path / "base.yaml").write_text(SLOWFAST_TINY_YAML)
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\nMODEL:\n  NUM_CLASSES: 9\n")
    cfg = parse_slowfast_yaml(child.read_text(), base_dir=tmp_path)
    assert cfg["MODEL"]["NUM_CLASSES"] == 9 and cfg["MVIT"]["DEPTH"] == 3
    config, _ = config_from_slowfast_yaml(child.read_text(), base_dir=tmp_path)
    assert config.num_classes == 9
    with pytest.raises(UserError, match="_BASE_"):
        config_from_slowfast_yaml(child.read_text())  # no directory to resolve base.yaml against
    # Keys a yaml leaves out take PySlowFast's defaults (here: absolute position embeddings on, no rel-pos).
    minimal, _ = config_from_slowfast_yaml("MODEL:\n  MODEL_NAME: MViT\nMVIT:\n  DEPTH: 2\n")
    assert minimal.use_abs_pos and not minimal.rel_pos_spatial and minimal.patch_padding == [2, 4, 4]


@pytest.mark.parametrize(
    "extra, match",
    [
        ("  LAYER_SCALE_INIT_VALUE: 0.1\n", "MVIT.LAYER_SCALE_INIT_VALUE"),
        ("  CONV_Q: 3\n", "unknown key MVIT.CONV_Q"),
        ("  MODE: conv_unshared\n", "MVIT.MODE"),
        ("  REV:\n    ENABLE: True\n", "MVIT.REV.ENABLE"),
    ],
)
def test_slowfast_yaml_refuses_unsupported(extra, match):
    with pytest.raises(UserError, match=match):
        # appended at the end of MVIT so it wins over an earlier value of the same key
        line = "  RESIDUAL_POOLING: True\n"
        config_from_slowfast_yaml(SLOWFAST_TINY_YAML.replace(line, line + extra))


def test_slowfast_yaml_harmless_and_not_mvit(caplog):
    text = SLOWFAST_TINY_YAML.replace("MVIT:\n", "MVIT:\n  HEAD_INIT_SCALE: 0.5\n  SOME_FORK_FLAG: False\n", 1)
    with caplog.at_level(logging.INFO, logger="mvit_video.models.convert"):
        config, _ = config_from_slowfast_yaml(text)
    assert config.depth == 3
    assert "MVIT.HEAD_INIT_SCALE=0.5" in caplog.text and "MVIT.SOME_FORK_FLAG=False" in caplog.text
    with pytest.raises(UserError, match="MODEL_NAME"):
        config_from_slowfast_yaml(SLOWFAST_TINY_YAML.replace("MODEL_NAME: MViT", "MODEL_NAME: SlowFast"))
    with pytest.raises(UserError, match="not valid YAML"):
        config_from_slowfast_yaml("MVIT: [unclosed")


def test_from_slowfast_refuses_unknown_and_missing_keys():
    source = {f"module.{k}": v for k, v in slowfast_tiny_state_dict().items()}
    assert "cls_token" in from_slowfast(source)  # prefix stripped
    with pytest.raises(UserError, match="blocks.1.attn.mystery"):
        from_slowfast({**source, "module.blocks.1.attn.mystery": torch.zeros(3)})
    with pytest.raises(UserError, match="layer scale"):
        from_slowfast({**source, "module.blocks.0.gamma_1": torch.zeros(16)})
    config, _ = config_from_slowfast_yaml(SLOWFAST_TINY_YAML)
    incomplete = from_slowfast(source)
    del incomplete["blocks.2.attn.rel_pos_t"]
    with pytest.raises(UserError, match="missing: blocks.2.attn.rel_pos_t"):
        load_state_dict_strict(MViT(config), incomplete, source="tiny.pyth")
    # Tables built for another input size: the message names the key and both shapes.
    with pytest.raises(UserError, match=r"shape mismatch: blocks.0.attn.rel_pos_t \(3, 16\) vs model \(7, 16\)"):
        eight_frames, _ = config_from_slowfast_yaml(SLOWFAST_TINY_YAML, num_frames=8)
        load_state_dict_strict(MViT(eight_frames), from_slowfast(source), "x")


def test_slowfast_cli_refusals(tmp_path, cli, capsys):
    """Unknown key and missing key through the CLI: exit 2, one `error:` line naming the key, nothing written."""
    extra = slowfast_tiny_state_dict()
    extra["blocks.0.attn.mystery"] = torch.zeros(2)
    missing = slowfast_tiny_state_dict()
    del missing["blocks.1.proj.weight"]
    for state_dict, key in ((extra, "blocks.0.attn.mystery"), (missing, "blocks.1.proj.weight")):
        src = write_pyth(tmp_path / "bad.pyth", state_dict)
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--from", "slowfast", str(src), str(tmp_path / "out.pyth")])
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0]
        assert not (tmp_path / "out.pyth").exists()


@pytest.mark.slow  # runs the converter CLI in a subprocess (~2 s of imports)
def test_cli_bad_inputs(tmp_path, cli, capsys):
    """Bad input files: exit code 2 and one `error:` line (checked in-process for speed, once as a subprocess)."""
    garbage = tmp_path / "garbage.pyth"
    garbage.write_bytes(b"not a checkpoint at all")
    no_cfg = write_pyth(tmp_path / "no_cfg.pyth", slowfast_tiny_state_dict(), cfg=None)
    cases = [
        (["--from", "slowfast", str(tmp_path / "missing.pyth"), str(tmp_path / "o.pyth")], "missing.pyth"),
        (["--from", "torchvision", str(garbage), str(tmp_path / "o.pyth")], "garbage.pyth"),
        (["--from", "slowfast", str(no_cfg), str(tmp_path / "o.pyth")], "--config"),
        (["--from", "torchvision", str(no_cfg), str(tmp_path / "o.pyth")], "no_cfg.pyth"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err

    result = run_cli("--from", "torchvision", str(garbage), str(tmp_path / "o.pyth"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {garbage}: not a PyTorch checkpoint (unreadable as one)"]
