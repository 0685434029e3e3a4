"""Our checkpoint format: written with make_checkpoint, read back with load_model / load_checkpoint_info."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mvit_video.checkpoint import (DATA_CONFIG_KEYS, TEST_CONFIG_KEYS, data_config, load_checkpoint_info, load_model,
                                   make_checkpoint)
from mvit_video.config import build_config, compose
from mvit_video.models import MViT, MViTConfig
from mvit_video.utils.errors import UserError
from mvit_video.utils.io import atomic_torch_save



def tiny_config(**overrides) -> MViTConfig:
    values = dict(
        num_classes=3, num_frames=4, crop_size=32, depth=2, embed_dim=16, num_heads=1, dim_mul=[[1, 2.0]],
        head_mul=[[1, 2.0]], pool_q_stride=[[0, 1, 1, 1], [1, 1, 2, 2]], pool_kv_stride_adaptive=[1, 4, 4],
    )  # fmt: skip
    values.update(overrides)
    return MViTConfig(**values)


def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values for all weights (different from the init) so a wrong load cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.dim() == 1 else 0.0))
    return model


DATA_CONFIG = {
    "num_frames": 4, "sampling_rate": 2, "target_fps": 30, "train_crop_size": 32, "test_crop_size": 32,
    "mean": [0.45] * 3, "std": [0.225] * 3, "dataset": "kinetics", "use_offset_sampling": True,
    "train_jitter_scales": [256, 320],
}  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, MViT, MViT]:
    """A checkpoint as training writes it (model + ema + training keys); returns (path, model, ema model)."""
    torch.manual_seed(0)
    config = tiny_config()
    model, ema = randomized(MViT(config), 1).eval(), randomized(MViT(config), 2).eval()
    ckpt = make_checkpoint(model, config, DATA_CONFIG, ["a", "b", "c"])
    optimizer = torch.optim.AdamW(model.parameters())
    ckpt.update(epoch=3, optimizer=optimizer.state_dict(), ema=ema.state_dict(), cfg="name: x\n")
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint_epoch_00003.pyth"
    atomic_torch_save(ckpt, path)
    return path, model, ema


def test_round_trip(saved):
    path, model, ema = saved
    loaded = load_model(path)
    assert isinstance(loaded, MViT) and not loaded.training
    assert load_checkpoint_info(path)["class_names"] == ["a", "b", "c"]  # names are the checkpoint's, not the model's
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
        assert torch.allclose(load_model(path, use_ema=True)(x), ema(x), atol=1e-5)
    # The saved checkpoint is plain data: it loads with weights_only=True (load_model uses that too).
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "mvit_video/1" and raw["model_config"]["depth"] == 2


def test_checkpoint_info(saved):
    path, _, _ = saved
    info = load_checkpoint_info(path)
    assert info["model_config"]["num_classes"] == 3 and info["model_config"]["pool_q_stride"][1] == [1, 1, 2, 2]
    assert info["data_config"] == DATA_CONFIG
    assert info["class_names"] == ["a", "b", "c"] and info["epoch"] == 3
    assert MViTConfig.from_dict(info["model_config"]) == tiny_config()


def test_prefixed_and_ema_wrapper_weights(tmp_path):
    """Weights saved through DDP (`module.`) or torch.compile (`_orig_mod.`), EMA saved as an AveragedModel."""
    config = tiny_config()
    model = randomized(MViT(config), 3).eval()
    ckpt = make_checkpoint(model, config, DATA_CONFIG, None)
    ckpt["model"] = {f"module._orig_mod.{k}": v for k, v in ckpt["model"].items()}
    ckpt["ema"] = {"n_averaged": torch.tensor(5), **{f"module.{k}": v for k, v in model.state_dict().items()}}
    path = tmp_path / "wrapped.pyth"
    atomic_torch_save(ckpt, path)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_model(path)(x), model(x), atol=1e-5)
        assert torch.allclose(load_model(path, use_ema=True)(x), model(x), atol=1e-5)


def test_load_errors_name_the_path(tmp_path, saved):
    missing = tmp_path / "nope.pyth"
    with pytest.raises(UserError, match=f"{missing}: no such file"):
        load_model(missing)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(UserError, match=f"{text}: not a PyTorch checkpoint"):
        load_model(text)
    with pytest.raises(UserError, match="is a directory"):
        load_checkpoint_info(tmp_path)
    slowfast = tmp_path / "K400_MVITv2_S_16x4.pyth"
    torch.save({"model_state": {"cls_token": torch.zeros(1, 1, 16)}, "cfg": "MVIT: {}\n", "epoch": 1}, slowfast)
    with pytest.raises(UserError, match=f"{slowfast}: not an mvit_video checkpoint.*PySlowFast.*convert_checkpoint"):
        load_model(slowfast)
    torchvision = tmp_path / "mvit_v2_s.pth"
    torch.save({"conv_proj.weight": torch.zeros(1)}, torchvision)
    with pytest.raises(UserError, match="--from torchvision"):
        load_model(torchvision)
    # Missing EMA, and weights that do not fit the stored config: the message names the file and the key.
    path, _, _ = saved
    no_ema = tmp_path / "no_ema.pyth"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["ema"]
    del ckpt["model"]["blocks.1.attn.rel_pos_t"]
    torch.save(ckpt, no_ema)
    with pytest.raises(UserError, match="no EMA weights"):
        load_model(no_ema, use_ema=True)
    with pytest.raises(UserError, match=f"{no_ema}: weights do not fit the model \\(missing: blocks.1.attn.rel_pos_t"):
        load_model(no_ema)


def test_make_checkpoint_checks_class_names():
    config = tiny_config()
    with pytest.raises(UserError, match="2 class names given but the model has num_classes=3"):
        make_checkpoint(MViT(config), config, DATA_CONFIG, ["a", "b"])


def test_data_config_carries_data_and_test_views():
    run = build_config(compose(["+experiment=ssv2_b_32x3"]))
    data = data_config(run)
    assert list(data) == [*DATA_CONFIG_KEYS, *TEST_CONFIG_KEYS]
    assert data["mean"] == list(run.data.mean) and type(data["mean"]) is list  # plain lists: weights_only loads
    assert data["train_jitter_scales"] == list(run.data.train_jitter_scales)
    assert data["num_frames"] == 32 and data["dataset"] == "ssv2" and data["frame_grid_fps"] == 30
    assert (data["num_ensemble_views"], data["num_spatial_crops"]) == (1, 3)  # the test protocol, for infer.py
