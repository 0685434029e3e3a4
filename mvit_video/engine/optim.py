"""Optimizer with PySlowFast's parameter groups, and the per-iteration LR schedule (cosine + linear warmup)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mvit_video.settings import SolverConfig


@dataclass(frozen=True)
class Schedule:
    """LR schedule settings (SOLVER.* keys); the three LRs already scaled by the number of nodes."""

    base_lr: float
    warmup_start_lr: float
    cosine_end_lr: float
    warmup_epochs: float
    max_epoch: float
    cosine_after_warmup: bool = True

    @classmethod
    def from_config(cls, solver: SolverConfig, num_shards: int = 1) -> "Schedule":
        """From solver.*; as PySlowFast, with base_lr_scale_num_shards all three LRs are multiplied by num_shards."""
        scale = num_shards if solver.base_lr_scale_num_shards else 1
        return cls(
            base_lr=float(solver.base_lr) * scale,
            warmup_start_lr=float(solver.warmup_start_lr) * scale,
            cosine_end_lr=float(solver.cosine_end_lr) * scale,
            warmup_epochs=float(solver.warmup_epochs),
            max_epoch=float(solver.max_epoch),
            cosine_after_warmup=bool(solver.cosine_after_warmup),
        )


def _cosine(epoch: float, s: Schedule) -> float:
    offset = s.warmup_epochs if s.cosine_after_warmup else 0.0
    progress = (epoch - offset) / (s.max_epoch - offset)
    return s.cosine_end_lr + (s.base_lr - s.cosine_end_lr) * 0.5 * (math.cos(math.pi * progress) + 1.0)


def lr_at(epoch: float, schedule: Schedule) -> float:
    """LR at fractional epoch `epoch` (= epoch + iter / iters_per_epoch): linear warmup, then cosine to end_lr."""
    if epoch < schedule.warmup_epochs:
        # Warmup ends at the value the cosine has at warmup_epochs (= base_lr with cosine_after_warmup).
        end = _cosine(schedule.warmup_epochs, schedule)
        return schedule.warmup_start_lr + (end - schedule.warmup_start_lr) * epoch / schedule.warmup_epochs
    return _cosine(epoch, schedule)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the same LR on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def param_groups(model: nn.Module, weight_decay: float, zero_wd_1d_param: bool = True,
                 zero_decay_pos_cls: bool = False) -> list[dict]:
    """PySlowFast groups: [decayed, no-decay]; no decay for 1-D params and biases (zero_wd_1d_param) and, only
    with zero_decay_pos_cls, for what the model names in `no_weight_decay()` (MViT: rel-pos tables, position
    embeddings, the cls token; the MViTv2 presets decay those). A model without that method exempts nothing more."""
    skip = model.no_weight_decay() if zero_decay_pos_cls and hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if zero_wd_1d_param and (p.ndim <= 1 or name.endswith(".bias")):
            no_decay.append(p)
        elif name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
              {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, solver: SolverConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW (eps 1e-8) or SGD (momentum, nesterov) over `param_groups`; `lr` is the starting LR."""
    groups = param_groups(model, float(solver.weight_decay), bool(solver.zero_wd_1d_param),
                          bool(solver.zero_decay_pos_cls))
    if solver.optimizing_method == "adamw":
        return torch.optim.AdamW(groups, lr=lr, eps=1e-8, weight_decay=float(solver.weight_decay))
    if solver.optimizing_method == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(solver.momentum), nesterov=bool(solver.nesterov),
                               weight_decay=float(solver.weight_decay))
    raise ValueError(f"unknown solver.optimizing_method {solver.optimizing_method!r}")  # settings reject it first
