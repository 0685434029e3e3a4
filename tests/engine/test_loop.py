"""Loop pieces: the soft-target loss, EMA arithmetic, the optimizer step (gradient accumulation, clipping under
the GradScaler) (preemption: tests/engine/test_preempt.py)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.engine.ema import ModelEma
from mvit_video.engine.loop import (LoopSettings, TrainState, accumulation_group_size, optimizer_step,
                                    soft_target_cross_entropy, train_one_epoch)
from mvit_video.engine.optim import Schedule


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


# ------------------------------------------------------------------------ gradient accumulation and clipping


def _tiny_mvit_state(lr: float = 0.05) -> TrainState:
    """The tests' tiny MViTv2 (dropout and drop path 0: no random draw in the step) with SGD + momentum, which
    (unlike AdamW) moves the weights in proportion to the gradient, at a constant LR."""
    from tiny import tiny_config

    from mvit_video.models import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config())
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    constant = Schedule(base_lr=lr, warmup_start_lr=lr, cosine_end_lr=lr, warmup_epochs=0.0, max_epoch=1.0)
    return TrainState(model=model, forward=model, optimizer=optimizer, schedule=constant)


def _clips(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 4, 32, 32, generator=g), torch.randint(0, 2, (n,), generator=g)


def _batched(video: torch.Tensor, labels: torch.Tensor, size: int) -> list[dict[str, torch.Tensor]]:
    return [{"video": v, "label": y} for v, y in zip(video.split(size), labels.split(size))]


@pytest.mark.slow
def test_accumulating_half_batches_gives_the_update_of_the_full_batch() -> None:
    """train.grad_accum_steps=2 over batches of B/2 updates the weights as batches of B do, the epoch's last,
    shorter group included: 10 clips are batches of 4, 4, 2, or of 2 accumulated as (2+2), (2+2), (2); the lone
    last batch is its group's whole loss, not half of it."""
    video, labels = _clips(10)
    full, half = _tiny_mvit_state(), _tiny_mvit_state()
    cpu = torch.device("cpu")
    train_one_epoch(full, _batched(video, labels, 4), 0, 3,
                    LoopSettings(device=cpu, amp_dtype=None, clip_grad_l2norm=None, log_period=1000))
    train_one_epoch(half, _batched(video, labels, 2), 0, 5,
                    LoopSettings(device=cpu, amp_dtype=None, grad_accum_steps=2, clip_grad_l2norm=None,
                                 log_period=1000))
    assert full.step == half.step == 3
    start = _tiny_mvit_state().model.state_dict()
    for name, weight in full.model.state_dict().items():
        moved = half.model.state_dict()[name]
        assert torch.allclose(moved, weight, rtol=1e-4, atol=1e-6), name
    assert any(not torch.equal(w, start[k]) for k, w in full.model.state_dict().items())  # the weights did move


def test_clipping_applies_to_the_true_gradient_norm_under_the_fp16_grad_scaler() -> None:
    """solver.clip_grad_l2norm with fp16 autocast and the GradScaler (CPU): the gradients are unscaled before
    clipping, so one SGD step of LR 1 moves the weights by exactly the clip norm (clipping the scaled gradients
    would move them by norm / scale); without clipping they move by the whole gradient norm."""
    torch.manual_seed(0)
    video = 20 * torch.randn(4, 3, 2, 4, 4)
    labels = torch.tensor([0, 2, 1, 0])
    start = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 4 * 4, 3))
    probe = copy.deepcopy(start)
    with torch.autocast("cpu", dtype=torch.float16):
        logits = probe(video)
    F.cross_entropy(logits.float(), labels).backward()
    true_norm = float(torch.nn.utils.get_total_norm([p.grad for p in probe.parameters()]))
    assert true_norm > 20  # well above the clip norm below

    def step(clip: float | None) -> tuple[float, torch.Tensor | None]:
        model = copy.deepcopy(start)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)  # scaled fp16 gradients stay finite
        state = TrainState(model=model, forward=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                           schedule=Schedule(1.0, 1.0, 1.0, 0.0, 1.0), scaler=scaler)
        settings = LoopSettings(device=torch.device("cpu"), amp_dtype=torch.float16, clip_grad_l2norm=clip,
                                log_period=1000)
        train_one_epoch(state, [{"video": video, "label": labels}], 0, 1, settings)
        assert state.step == 1 and scaler.get_scale() == 2.0**10  # stepped: no overflow skipped it
        moved = [p.detach() - q.detach() for p, q in zip(model.parameters(), start.parameters())]
        return float(torch.linalg.vector_norm(torch.stack([m.norm() for m in moved])))

    assert step(0.5) == pytest.approx(0.5, rel=1e-3)
    assert step(None) == pytest.approx(true_norm, rel=1e-3)


def test_the_optimizer_step_returns_the_norm_before_clipping_and_updates_the_ema() -> None:
    """optimizer_step: the norm clip_grad_norm_ saw (unclipped), the weights stepped, gradients cleared, the EMA
    moved, one more step counted."""
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    state = TrainState(model=model, forward=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                       schedule=Schedule(1.0, 1.0, 1.0, 0.0, 1.0), ema=ModelEma(model, decay=0.5))
    model.weight.grad = torch.tensor([[3.0, 4.0]])  # norm 5
    norm = optimizer_step(state, clip_grad_l2norm=1.0)
    assert float(norm) == pytest.approx(5.0)
    assert torch.allclose(model.weight, torch.tensor([[1.0 - 0.6, 1.0 - 0.8]]), atol=1e-6)
    assert model.weight.grad is None and state.step == 1
    assert torch.allclose(state.ema.module.weight, torch.tensor([[0.7, 0.6]]), atol=1e-6)
    model.weight.grad = torch.tensor([[3.0, 4.0]])
    assert optimizer_step(state, clip_grad_l2norm=None) is None and state.step == 2  # nobody asked for the norm
    model.weight.grad = torch.tensor([[3.0, 4.0]])
    assert float(optimizer_step(state, clip_grad_l2norm=None, want_norm=True)) == pytest.approx(5.0)


def test_accumulation_groups_end_at_the_epoch_end() -> None:
    """Groups of grad_accum_steps batches from the epoch's start; the last one holds what is left."""
    assert [accumulation_group_size(i, 2, 5) for i in range(5)] == [2, 2, 2, 2, 1]
    assert [accumulation_group_size(i, 3, 7) for i in range(7)] == [3, 3, 3, 3, 3, 3, 1]
    assert [accumulation_group_size(i, 4, 6) for i in range(6)] == [4, 4, 4, 4, 2, 2]
    assert [accumulation_group_size(i, 1, 3) for i in range(3)] == [1, 1, 1]


def test_interactive_has_one_home() -> None:
    """utils.progress.interactive is the one definition; the loop's old name still imports, with a warning."""
    import mvit_video.engine.loop as loop
    from mvit_video.utils.progress import interactive

    with pytest.warns(DeprecationWarning, match="use mvit_video.utils.progress.interactive"):
        assert loop.interactive is interactive
    with pytest.raises(AttributeError):
        loop.no_such_name  # noqa: B018
