"""Checkpoint helpers: RNG round trip, latest-checkpoint choice, fine-tuning with another head, bad files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mvit_video import checkpoint as ck
from mvit_video.utils.errors import UserError


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ck.save({"rng": [ck.get_rng_state()]}, tmp_path / "r.pyth")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.set_rng_state(ck.load(tmp_path / "r.pyth")["rng"][0])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def _write(path: Path, epoch: int, batches_done: int = 0, old_format: bool = False) -> None:
    # checkpoints written before the position was stored once carried a per-process start_index instead
    position = {"start_index": batches_done * 4} if old_format else {"batches_done": batches_done}
    ck.save({"epoch": epoch, "sampler": position}, path)


def _latest(output_dir: Path) -> Path | None:
    return ck.load_latest(output_dir)[0]


def test_latest_prefers_furthest_progress(tmp_path: Path) -> None:
    assert _latest(tmp_path) is None
    with pytest.raises(UserError, match="no checkpoint in"):
        ck.latest_checkpoint(tmp_path)
    _write(ck.epoch_checkpoint_path(tmp_path, 2), 2)
    _write(ck.epoch_checkpoint_path(tmp_path, 10), 10)
    assert _latest(tmp_path).name == "checkpoint_epoch_00010.pyth"  # numeric, not mtime
    _write(ck.preempt_checkpoint_path(tmp_path), 10, batches_done=2)  # mid-way through epoch 11
    assert _latest(tmp_path).name == "checkpoint_preempt.pyth"
    _write(ck.preempt_checkpoint_path(tmp_path), 10, batches_done=2, old_format=True)
    assert _latest(tmp_path).name == "checkpoint_preempt.pyth"
    _write(ck.preempt_checkpoint_path(tmp_path), 10, batches_done=0)  # saved at the end of epoch 10: a tie
    assert _latest(tmp_path).name == "checkpoint_epoch_00010.pyth"
    _write(ck.preempt_checkpoint_path(tmp_path), 10, batches_done=2)
    (ck.epoch_checkpoint_path(tmp_path, 10)).write_bytes(b"torn")  # a corrupt newest epoch file is skipped too
    assert _latest(tmp_path).name == "checkpoint_preempt.pyth"
    _write(ck.epoch_checkpoint_path(tmp_path, 11), 11)  # an older preemption file is superseded
    assert _latest(tmp_path).name == "checkpoint_epoch_00011.pyth"
    # A temp file left by a crash mid-write is never picked.
    (ck.checkpoint_dir(tmp_path) / ".checkpoint_epoch_00012.pyth.abc.tmp").write_bytes(b"torn")
    assert _latest(tmp_path).name == "checkpoint_epoch_00011.pyth"


def test_unreadable_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pyth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pyth"):
        ck.load(tmp_path / "bad.pyth")
    with pytest.raises(UserError, match="does not exist"):
        ck.load(tmp_path / "missing.pyth")


class _Net(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Module()
        self.head.projection = nn.Linear(8, classes)


def test_load_pretrained_reinitialises_a_head_of_another_size(tmp_path: Path, caplog) -> None:
    src = _Net(400)
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "k400.pyth")  # saved from DDP
    dst = _Net(174)
    head_before = dst.head.projection.weight.clone()
    with caplog.at_level("INFO"):
        ck.load_pretrained(dst, tmp_path / "k400.pyth")
    assert torch.equal(dst.body.weight, src.body.weight)  # body copied (DDP prefix removed)
    assert torch.equal(dst.head.projection.weight, head_before)  # head kept fresh
    assert "head re-initialised for 174 classes" in caplog.text
    with pytest.raises(UserError, match="body.weight"):
        wrong = nn.Module()
        wrong.body = nn.Linear(4, 9)
        wrong.head = nn.Module()
        wrong.head.projection = nn.Linear(9, 174)
        ck.load_pretrained(wrong, tmp_path / "k400.pyth")


_PYSLOWFAST_YAML = """\
TRAIN:
  DATASET: {dataset}
DATA:
  NUM_FRAMES: 4
  TRAIN_CROP_SIZE: 32
  INPUT_CHANNEL_NUM: [3]
  REVERSE_INPUT_CHANNEL: {reverse}
MVIT:
  DEPTH: 2
  EMBED_DIM: 16
  PATCH_PADDING: (1, 3, 3)
  USE_ABS_POS: False
  REL_POS_SPATIAL: True
  REL_POS_TEMPORAL: True
  POOL_KVQ_KERNEL: [3, 3, 3]
  POOL_KV_STRIDE_ADAPTIVE: [1, 4, 4]
  POOL_Q_STRIDE: [[0, 1, 1, 1], [1, 1, 2, 2]]
  DIM_MUL: [[1, 2.0]]
  HEAD_MUL: [[1, 2.0]]
  RESIDUAL_POOLING: True
  DIM_MUL_IN_ATT: True
MODEL:
  NUM_CLASSES: 5
  ARCH: mvit
  MODEL_NAME: MViT
"""


def _tiny_mvit(yaml_text: str, seed: int = 0):
    from mvit_video.models import MViT
    from mvit_video.models.convert import config_from_slowfast_yaml

    torch.manual_seed(seed)
    config = config_from_slowfast_yaml(yaml_text)[0]
    return MViT(config).eval(), config


@pytest.mark.parametrize("dataset, reverse, flipped", [("ssv2", False, True), ("ssv2", True, False),
                                                       ("kinetics", False, False)])  # fmt: skip
def test_load_pretrained_converts_pyslowfast_checkpoints(tmp_path: Path, dataset, reverse, flipped) -> None:
    """A PySlowFast .pyth goes through convert.from_slowfast: a BGR-input kernel is folded to RGB, keys checked."""
    yaml_text = _PYSLOWFAST_YAML.format(dataset=dataset, reverse=reverse)
    src, _ = _tiny_mvit(yaml_text, seed=0)
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    torch.save({"epoch": 3, "model_state": state, "optimizer_state": {}, "cfg": yaml_text}, tmp_path / "sf.pyth")
    dst, _ = _tiny_mvit(yaml_text, seed=1)
    ck.load_pretrained(dst, tmp_path / "sf.pyth")
    kernel = src.patch_embed.proj.weight
    assert torch.equal(dst.patch_embed.proj.weight, kernel.flip(1) if flipped else kernel)
    assert torch.equal(dst.blocks[1].attn.rel_pos_h, src.blocks[1].attn.rel_pos_h)
    # the converter's checks apply: a key it does not understand, or no cfg to tell the channel order
    torch.save({"model_state": {**state, "blocks.0.gamma_1": torch.ones(16)}, "cfg": yaml_text}, tmp_path / "x.pyth")
    with pytest.raises(UserError, match="layer scale"):
        ck.load_pretrained(dst, tmp_path / "x.pyth")
    torch.save({"model_state": state}, tmp_path / "nocfg.pyth")
    with pytest.raises(UserError, match="convert it first: python scripts/convert_checkpoint.py"):
        ck.load_pretrained(dst, tmp_path / "nocfg.pyth")


def test_load_pretrained_converts_torchvision_weights(tmp_path: Path) -> None:
    from mvit_video.models.convert import torchvision_mvit

    _, config = _tiny_mvit(_PYSLOWFAST_YAML.format(dataset="kinetics", reverse=False))
    torch.manual_seed(2)
    reference = torchvision_mvit(config).eval()
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    dst, _ = _tiny_mvit(_PYSLOWFAST_YAML.format(dataset="kinetics", reverse=False), seed=3)
    ck.load_pretrained(dst, tmp_path / "tv.pth")
    x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(dst(x), reference(x), atol=1e-4, rtol=1e-4)
