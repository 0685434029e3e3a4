"""Video-level classification metrics from averaged view probabilities (all figures in percent)."""

from __future__ import annotations

import math
from typing import Any

import torch


def topk_predictions(probs: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The k (at most C) most probable classes per video, best first: (values [N,k], indices [N,k])."""
    k = min(k, probs.shape[1])
    return probs.topk(k, dim=1, largest=True, sorted=True)


def summarize(labels: torch.Tensor, probs: torch.Tensor) -> dict[str, Any]:
    """Top-1, top-5 (top-min(5, C)), mean class accuracy and per-class top-1 of `probs` [N, C] vs `labels` [N].

    `per_class` is a list over all C classes of {"videos": n, "top1": percent or None when the class has no video};
    `mean_class_acc` averages top-1 over the classes that have videos. With N = 0 every figure is NaN.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be [N, C] with N = len(labels) = {labels.shape[0]}, got {tuple(probs.shape)}")
    n, num_classes = probs.shape
    if n == 0:  # nothing scored (every video failed): probs may even be [0, 0]
        return {"top1": math.nan, "top5": math.nan, "mean_class_acc": math.nan,
                "per_class": [{"videos": 0, "top1": None} for _ in range(num_classes)]}
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")

    _, top = topk_predictions(probs, 5)
    hit = top == labels[:, None]  # [N, k]
    hit1 = hit[:, 0]
    # Percentages as python floats of integer counts, so that anyone recounting from predictions gets the same value.
    top1 = 100.0 * int(hit1.sum()) / n
    top5 = 100.0 * int(hit.any(dim=1).sum()) / n

    videos = torch.bincount(labels, minlength=num_classes)
    correct = torch.bincount(labels[hit1], minlength=num_classes)
    per_class = [
        {"videos": int(v), "top1": (100.0 * int(c) / int(v)) if v else None} for v, c in zip(videos, correct)
    ]
    present = [p["top1"] for p in per_class if p["top1"] is not None]
    mean_class_acc = sum(present) / len(present) if present else math.nan
    return {"top1": top1, "top5": top5, "mean_class_acc": mean_class_acc, "per_class": per_class}
