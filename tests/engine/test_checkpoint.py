"""Checkpoint helpers: RNG round trip, latest-checkpoint choice, fine-tuning with another head, bad files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mvit_video.engine import checkpoint as ck
from mvit_video.utils.errors import UserError


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ck.save({"rng": [ck.get_rng_state()]}, tmp_path / "r.pyth")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.set_rng_state(ck.load(tmp_path / "r.pyth")["rng"][0])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def _write(path: Path, epoch: int, start_index: int = 0) -> None:
    ck.save({"epoch": epoch, "sampler": {"start_index": start_index}}, path)


def test_find_latest_prefers_furthest_progress(tmp_path: Path) -> None:
    assert ck.find_latest(tmp_path) is None
    _write(ck.epoch_checkpoint_path(tmp_path, 2), 2)
    _write(ck.epoch_checkpoint_path(tmp_path, 10), 10)
    assert ck.find_latest(tmp_path).name == "checkpoint_epoch_00010.pyth"  # numeric, not mtime
    _write(ck.preempt_checkpoint_path(tmp_path), 10, start_index=8)  # mid-way through epoch 11
    assert ck.find_latest(tmp_path).name == "checkpoint_preempt.pyth"
    _write(ck.epoch_checkpoint_path(tmp_path, 11), 11)  # an older preemption file is superseded
    assert ck.find_latest(tmp_path).name == "checkpoint_epoch_00011.pyth"
    # A temp file left by a crash mid-write is never picked.
    (ck.checkpoint_dir(tmp_path) / ".checkpoint_epoch_00012.pyth.abc.tmp").write_bytes(b"torn")
    assert ck.find_latest(tmp_path).name == "checkpoint_epoch_00011.pyth"


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
    torch.save({"model_state": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "k400.pyth")
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
