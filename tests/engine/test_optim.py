"""LR schedule against hand-computed values; PySlowFast parameter groups; optimizer choice."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from mvit_video.config import build_config, compose
from mvit_video.engine.optim import Schedule, build_optimizer, lr_at, param_groups
from mvit_video.settings import SolverConfig

K400 = Schedule(base_lr=1e-4, warmup_start_lr=1e-6, cosine_end_lr=1e-6, warmup_epochs=30.0, max_epoch=200.0)


@pytest.mark.parametrize(
    "epoch, expected",
    [
        (0.0, 1e-6),  # warmup start
        (15.0, 1e-6 + (1e-4 - 1e-6) * 0.5),  # halfway through the linear warmup
        (29.999, 1e-6 + (1e-4 - 1e-6) * 29.999 / 30),
        (30.0, 1e-4),  # cosine starts at base_lr (cosine_after_warmup)
        (72.5, 1e-6 + (1e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi / 4))),  # a quarter into the cosine
        (115.0, 1e-6 + (1e-4 - 1e-6) * 0.5),  # the cosine's midpoint
        (200.0, 1e-6),  # the end
    ],
)
def test_lr_at_matches_hand_values(epoch: float, expected: float) -> None:
    assert lr_at(epoch, K400) == pytest.approx(expected, rel=1e-9)


def test_lr_is_per_iteration_and_monotone_in_warmup() -> None:
    iters = 100
    lrs = [lr_at(3 + i / iters, K400) for i in range(iters)]
    assert all(b > a for a, b in zip(lrs, lrs[1:]))  # changes every iteration, not every epoch
    assert lrs[50] == pytest.approx(1e-6 + (1e-4 - 1e-6) * 3.5 / 30)


def test_cosine_without_offset_and_shard_scaling() -> None:
    solver = _solver(base_lr=0.0025, warmup_start_lr=1e-4, cosine_end_lr=1e-6, warmup_epochs=3.0, max_epoch=100,
                     cosine_after_warmup=False, base_lr_scale_num_shards=True)
    s = Schedule.from_config(solver, num_shards=4)
    assert (s.base_lr, s.warmup_start_lr, s.cosine_end_lr) == pytest.approx((0.01, 4e-4, 4e-6))
    # Without the offset the cosine runs over [0, max_epoch]; warmup ends at the cosine's value at epoch 3.
    end_of_warmup = 4e-6 + (0.01 - 4e-6) * 0.5 * (1 + math.cos(math.pi * 3 / 100))
    assert lr_at(3.0, s) == pytest.approx(end_of_warmup)
    assert lr_at(1.5, s) == pytest.approx(4e-4 + (end_of_warmup - 4e-4) * 0.5)
    solver = dataclasses.replace(solver, base_lr_scale_num_shards=False)
    assert Schedule.from_config(solver, num_shards=4).base_lr == pytest.approx(0.0025)


def _solver(**values: object) -> SolverConfig:
    """The default solver.* settings (conf/config.yaml) with `values` changed."""
    return dataclasses.replace(build_config(compose([])).solver, **values)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.attn = nn.Module()
        self.attn.rel_pos_h = nn.Parameter(torch.zeros(7, 8))
        self.head = nn.Linear(8, 3)
        self.frozen = nn.Parameter(torch.zeros(2, 2), requires_grad=False)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "attn.rel_pos_h"}  # as MViT.no_weight_decay names them: full parameter names


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_param_groups_follow_pyslowfast_mvitv2_presets() -> None:
    model = _Tiny()
    decay, no_decay = param_groups(model, 0.05, zero_wd_1d_param=True, zero_decay_pos_cls=False)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    # ZERO_DECAY_POS_CLS False (the presets): rel-pos tables and the cls token ARE decayed.
    assert _names(model, decay) == {"cls_token", "proj.weight", "attn.rel_pos_h", "head.weight"}
    assert _names(model, no_decay) == {"proj.bias", "norm.weight", "norm.bias", "head.bias"}


def test_param_groups_options() -> None:
    model = _Tiny()
    decay, no_decay = param_groups(model, 0.05, zero_wd_1d_param=True, zero_decay_pos_cls=True)
    assert {"cls_token", "attn.rel_pos_h"} <= _names(model, no_decay)
    (only,) = param_groups(model, 0.05, zero_wd_1d_param=False, zero_decay_pos_cls=False)
    assert len(only["params"]) == 8  # every trainable parameter, decayed; the frozen one is left out


def test_build_optimizer_kinds() -> None:
    model = _Tiny()
    solver = _solver(optimizing_method="sgd", weight_decay=1e-4, zero_wd_1d_param=True, zero_decay_pos_cls=False,
                     momentum=0.9, nesterov=True)
    opt = build_optimizer(model, solver, lr=0.1)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"]
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    solver = dataclasses.replace(solver, optimizing_method="adamw")
    opt = build_optimizer(model, solver, lr=0.1)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["eps"] == 1e-8


@pytest.mark.parametrize("fields", [{}, {"use_abs_pos": True, "sep_pos_embed": True}, {"use_abs_pos": True}])
@pytest.mark.parametrize("zero_wd_1d_param, zero_decay_pos_cls", [(True, False), (True, True), (False, True)])
def test_param_groups_of_mvit_are_those_of_the_name_matching_rule(fields, zero_wd_1d_param, zero_decay_pos_cls):
    """#22: the groups come from MViT.no_weight_decay() now; they must be exactly (same parameters, same order)
    what matching "rel_pos" / "cls_token" / "pos_embed" in the names gave before, or training would change."""
    from tiny import tiny_config

    from mvit_video.models import MViT

    model = MViT(tiny_config(num_frames=8, num_classes=5, **fields))
    decay, no_decay = [], []  # the rule param_groups had until #22, verbatim
    for name, p in model.named_parameters():
        is_pos_cls = "rel_pos" in name or "cls_token" in name or "pos_embed" in name
        if zero_wd_1d_param and (p.ndim <= 1 or name.endswith(".bias")):
            no_decay.append(p)
        elif zero_decay_pos_cls and is_pos_cls:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = param_groups(model, 0.05, zero_wd_1d_param, zero_decay_pos_cls)
    assert [[id(p) for p in g["params"]] for g in groups] == [[id(p) for p in ps] for ps in (decay, no_decay) if ps]
    if zero_decay_pos_cls and zero_wd_1d_param:  # the case that matters: the tables really are exempt
        assert {n for n, p in model.named_parameters() if any(p is q for q in groups[1]["params"])} >= \
            model.no_weight_decay()
