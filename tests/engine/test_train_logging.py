"""What a person watching a run sees: per-iteration TensorBoard curves (read back from the event files) and log
lines by time as well as by iteration."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.engine.loop import LoopSettings, TrainState, train_one_epoch
from mvit_video.engine.optim import Schedule

TAGS = {"train/loss", "train/lr", "train/grad_norm", "train/clips_per_s", "train/data_wait_s"}


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of every scalar in the event files under `logdir`, as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _linear_state(clip: float | None) -> tuple[TrainState, LoopSettings]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 4 * 4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = Schedule(base_lr=0.1, warmup_start_lr=0.01, cosine_end_lr=0.0, warmup_epochs=1.0, max_epoch=2.0)
    settings = LoopSettings(device=torch.device("cpu"), amp_dtype=None, clip_grad_l2norm=clip, log_period=1000,
                            max_epoch=2)
    return TrainState(model=model, forward=model, optimizer=optimizer, schedule=schedule), settings


def _batches(n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [{"video": torch.randn(2, 3, 2, 4, 4, generator=g), "label": torch.tensor([0, 2])} for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("clip", [None, 0.01])
def test_tensorboard_has_per_iteration_curves_at_the_global_iteration(tmp_path, clip) -> None:
    """Every iteration of both epochs writes loss, LR, grad norm, clips/s and data wait at epoch * iters + i + 1;
    the grad norm is the one before clipping (what clip_grad_norm_ returns), also with clipping off."""
    from torch.utils.tensorboard import SummaryWriter

    state, settings = _linear_state(clip)
    batches = _batches(3)
    norms = []  # the expected norms: recomputed from the same weights and batch before each step
    writer = SummaryWriter(str(tmp_path))
    for epoch in range(2):
        for i, b in enumerate(batches):
            probe = [p.detach().clone().requires_grad_() for p in state.model.parameters()]
            logits = F.linear(b["video"].flatten(1), probe[0], probe[1])
            F.cross_entropy(logits, b["label"]).backward()
            norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in probe]))))
            train_one_epoch(state, [b], epoch, 3, settings, start_batch=i, tb_writer=writer)
    writer.close()
    scalars = _scalars(tmp_path)
    assert TAGS <= set(scalars)
    for tag in TAGS:
        assert [s for s, _ in scalars[tag]] == [1, 2, 3, 4, 5, 6], tag
    assert [v for _, v in scalars["train/grad_norm"]] == pytest.approx(norms, rel=1e-5)
    lrs = [v for _, v in scalars["train/lr"]]
    assert lrs[0] < lrs[2] < lrs[3]  # warm-up rises with the iteration
    assert all(v > 0 for _, v in scalars["train/clips_per_s"])
    assert all(v >= 0 for _, v in scalars["train/data_wait_s"])


@pytest.mark.slow
def test_a_log_line_comes_by_time_when_log_period_is_not_reached(caplog) -> None:
    """log_period 1000 over a 3-iteration epoch: only the epoch's last line by count; with log_period_s tiny,
    every iteration logs (a slow run is never silent for longer than log_period_s)."""
    state, settings = _linear_state(None)
    with caplog.at_level(logging.INFO, logger="mvit_video.engine.loop"):
        train_one_epoch(state, _batches(3), 0, 3, settings)
    assert [r.getMessage().split(" loss")[0] for r in caplog.records] == ["epoch 1/2 iter 3/3"]
    caplog.clear()
    settings.log_period_s = 1e-9
    with caplog.at_level(logging.INFO, logger="mvit_video.engine.loop"):
        train_one_epoch(state, _batches(3), 1, 3, settings)
    assert [r.getMessage().split(" loss")[0] for r in caplog.records] == [f"epoch 2/2 iter {i}/3" for i in (1, 2, 3)]


@pytest.mark.slow
def test_a_training_run_writes_per_iteration_curves(tiny) -> None:
    """The trainer hands its writer to the loop: a 2-epoch run of 2 iterations each has every train/* tag at
    global iterations 1-4, beside the per-epoch values; log_period_s reaches the loop from the config."""
    from mvit_video.train import train

    cfg = tiny("run", "log_period=1000", "log_period_s=0.000001")
    train(cfg)
    scalars = _scalars(Path(cfg.output_dir) / "tensorboard")
    for tag in TAGS:
        assert [s for s, _ in scalars[tag]] == [1, 2, 3, 4], tag
    assert any(tag.startswith("epoch/") for tag in scalars)
    log = (Path(cfg.output_dir) / "train.log").read_text()
    assert "epoch 1/2 iter 1/2 loss" in log  # by time: log_period 1000 alone would give only iteration 2
    # each validation gives its time (a compiled run's first one includes compiling the eval graphs)
    assert len(re.findall(r"epoch [12]: val top1 \S+ top5 \S+ \(\d+ videos, 0 failed\) in \d+\.\d s\n", log)) == 2
