"""Loop pieces: the soft-target loss, EMA arithmetic (preemption: tests/engine/test_preempt.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.engine.ema import ModelEma
from mvit_video.engine.loop import soft_target_cross_entropy


def test_soft_target_cross_entropy_matches_hard_and_smoothed_labels() -> None:
    logits, labels = torch.randn(4, 5), torch.tensor([0, 3, 1, 4])
    one_hot = F.one_hot(labels, 5).float()
    assert torch.allclose(soft_target_cross_entropy(logits, one_hot), F.cross_entropy(logits, labels))
    smooth = one_hot * 0.9 + 0.1 / 5
    assert torch.allclose(soft_target_cross_entropy(logits, smooth),
                          F.cross_entropy(logits, labels, label_smoothing=0.1))


def test_ema_moves_towards_the_weights() -> None:
    model = nn.Linear(2, 1)
    ema = ModelEma(model, decay=0.75)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, start + 0.25 * 4.0)
    assert not ema.module.weight.requires_grad
