"""Metrics on hand-made probabilities: top-1, top-5, mean class accuracy, per-class accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from mvit_video.eval.metrics import summarize, topk_predictions


def test_summarize_hand_computed():
    # 6 classes, 5 videos. Rank of the true class per video: 1st, 2nd, 6th, 1st, 5th.
    probs = torch.tensor(
        [
            [0.50, 0.20, 0.10, 0.10, 0.05, 0.05],  # label 0: rank 1
            [0.40, 0.30, 0.10, 0.10, 0.05, 0.05],  # label 1: rank 2
            [0.30, 0.25, 0.20, 0.15, 0.09, 0.01],  # label 5: rank 6 (outside top-5)
            [0.05, 0.05, 0.60, 0.10, 0.10, 0.10],  # label 2: rank 1
            [0.30, 0.25, 0.20, 0.15, 0.09, 0.01],  # label 4: rank 5
        ]
    )
    labels = torch.tensor([0, 1, 5, 2, 4])
    m = summarize(labels, probs)
    assert m["top1"] == pytest.approx(100 * 2 / 5)
    assert m["top5"] == pytest.approx(100 * 4 / 5)
    # classes with videos: 0 (1/1), 1 (0/1), 2 (1/1), 4 (0/1), 5 (0/1); class 3 has none
    assert m["mean_class_acc"] == pytest.approx(100 * 2 / 5)
    assert [c["videos"] for c in m["per_class"]] == [1, 1, 1, 0, 1, 1]
    assert [c["top1"] for c in m["per_class"]] == [100.0, 0.0, 100.0, None, 0.0, 0.0]


def test_mean_class_acc_differs_from_top1_when_unbalanced():
    # class 0: 3 videos all right; class 1: 1 video wrong -> top1 75, mean class acc (100 + 0) / 2 = 50
    probs = torch.tensor([[0.9, 0.1]] * 4)
    m = summarize(torch.tensor([0, 0, 0, 1]), probs)
    assert m["top1"] == pytest.approx(75.0)
    assert m["mean_class_acc"] == pytest.approx(50.0)


def test_top5_with_fewer_than_five_classes_is_top_all():
    probs = torch.tensor([[0.1, 0.2, 0.7], [0.7, 0.2, 0.1]])
    m = summarize(torch.tensor([0, 2]), probs)
    assert m["top1"] == 0.0
    assert m["top5"] == 100.0  # top-min(5, C) = top-3 contains every class
    values, indices = topk_predictions(probs, 5)
    assert indices.tolist() == [[2, 1, 0], [0, 1, 2]]
    assert values[0].tolist() == pytest.approx([0.7, 0.2, 0.1])


def test_empty_and_bad_labels():
    m = summarize(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))
    assert math.isnan(m["top1"]) and math.isnan(m["mean_class_acc"])
    with pytest.raises(ValueError, match="labels"):
        summarize(torch.tensor([4]), torch.ones(1, 4) / 4)


def test_summarize_nothing_scored():
    """Every video failed: NaN figures (no class count known: probs [0, 0]), not an exception."""
    for num_classes in (0, 4):
        m = summarize(torch.zeros(0, dtype=torch.long), torch.zeros(0, num_classes))
        assert all(math.isnan(m[k]) for k in ("top1", "top5", "mean_class_acc"))
        assert m["per_class"] == [{"videos": 0, "top1": None}] * num_classes
