"""Loop pieces: the soft-target loss, preemption hand-over (submitit / plain exit), EMA arithmetic."""

from __future__ import annotations

import os
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.engine.ema import ModelEma
from mvit_video.engine.loop import PreemptionHandler, soft_target_cross_entropy


def test_soft_target_cross_entropy_matches_hard_and_smoothed_labels() -> None:
    logits, labels = torch.randn(4, 5), torch.tensor([0, 3, 1, 4])
    one_hot = F.one_hot(labels, 5).float()
    assert torch.allclose(soft_target_cross_entropy(logits, one_hot), F.cross_entropy(logits, labels))
    smooth = one_hot * 0.9 + 0.1 / 5
    assert torch.allclose(soft_target_cross_entropy(logits, smooth),
                          F.cross_entropy(logits, labels, label_smoothing=0.1))


def test_preemption_exits_with_128_plus_signal_and_restores_handlers(monkeypatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    before = signal.getsignal(signal.SIGUSR1)
    handler = PreemptionHandler().install()
    os.kill(os.getpid(), signal.SIGUSR1)  # only sets the flag: the process keeps running
    assert handler.signum == signal.SIGUSR1
    with pytest.raises(SystemExit) as e:
        handler.exit()
    assert e.value.code == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == before


def test_preemption_hands_over_to_a_previous_python_handler(monkeypatch) -> None:
    """Under submitit its own SIGUSR1 handler requeues the job: ours saves first, then calls it."""
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    try:
        handler = PreemptionHandler().install()
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(SystemExit):
            handler.exit()
        assert calls == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_ema_moves_towards_the_weights() -> None:
    model = nn.Linear(2, 1)
    ema = ModelEma(model, decay=0.75)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, start + 0.25 * 4.0)
    assert not ema.module.weight.requires_grad
