"""Report files of a test (eval.reports): predictions.jsonl top-1 recounted equals the metrics.jsonl top-1;
per-class CSV; the printed summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from mvit_video.eval import MultiViewResult, summarize
from mvit_video.eval.reports import FAILED, METRICS, PER_CLASS, PREDICTIONS, write_reports


def recount_top1(predictions_path) -> float:
    lines = [json.loads(x) for x in Path(predictions_path).read_text().splitlines()]
    return 100.0 * sum(p["topk"][0][0] == p["label"] for p in lines) / len(lines)


def test_predictions_top1_equals_metrics_top1(tmp_path):
    gen = torch.Generator().manual_seed(0)
    n, c = 37, 7
    probs = torch.rand(n, c, generator=gen).softmax(dim=1)
    probs[3] = 1.0 / c  # an exact tie: both reports must break it the same way
    labels = torch.randint(0, c, (n,), generator=gen)
    result = MultiViewResult(indices=torch.arange(n), paths=[f"v{i}.mp4" for i in range(n)], labels=labels,
                             probs=probs, failed=["bad.mp4"], failed_indices=[n])
    m = summarize(labels, probs)
    record = {"split": "test", "top1": m["top1"], "top5": m["top5"], "mean_class_acc": m["mean_class_acc"],
              "views": [5, 1], "videos": n, "failed_videos": 1}
    write_reports(tmp_path, result, record, m["per_class"], [f"class_{i}" for i in range(c)])

    lines = [json.loads(x) for x in (tmp_path / PREDICTIONS).read_text().splitlines()]
    assert [p["video"] for p in lines] == result.paths
    assert all(len(p["topk"]) == 5 for p in lines)
    assert all(p["topk"][j][1] >= p["topk"][j + 1][1] for p in lines for j in range(4))  # sorted
    metrics = [json.loads(x) for x in (tmp_path / METRICS).read_text().splitlines()]
    assert metrics[-1]["top1"] == recount_top1(tmp_path / PREDICTIONS)
    assert metrics[-1]["failed_videos"] == 1
    assert (tmp_path / FAILED).read_text() == "bad.mp4\n"

    rows = list(csv.DictReader((tmp_path / PER_CLASS).read_text().splitlines()))
    assert [r["name"] for r in rows] == [f"class_{i}" for i in range(c)]
    assert sum(int(r["videos"]) for r in rows) == n
    # the per-class figures are consistent with the overall top-1
    correct = sum(int(r["videos"]) * float(r["top1"] or 0) / 100 for r in rows)
    assert round(correct) == round(m["top1"] * n / 100)

    # a second run appends to metrics.jsonl and drops the stale failed list
    result.failed, record["failed_videos"] = [], 0
    write_reports(tmp_path, result, record, m["per_class"], None)
    assert len((tmp_path / METRICS).read_text().splitlines()) == 2
    assert not (tmp_path / FAILED).exists()
    rows = list(csv.DictReader((tmp_path / PER_CLASS).read_text().splitlines()))
    assert [r["name"] for r in rows] == [str(i) for i in range(c)]  # class index as name when names are unknown


def test_summary_text_names_accuracy_cost_failures_and_files(tmp_path):
    from mvit_video.eval.reports import summary_text

    report = {"top1": 50.0, "top5": None, "mean_class_acc": 25.0, "videos": 4, "views": [2, 3], "seconds": 1.25,
              "gflops_per_view": 1.5, "failed_videos": 1, "failed": ["bad.mp4"]}
    lines = summary_text(Path("ck.pyth"), report, tmp_path).splitlines()
    assert lines[:4] == ["checkpoint: ck.pyth",
                         "top1 50.00  top5 n/a  mean class acc 25.00  (4 videos, 2x3 views, 1.2 s)",
                         "1.50 GFLOPs/view x 2x3 views = 9.00 GFLOPs/video", "failed videos: 1"]
    assert lines[4] == "  bad.mp4" and lines[5].startswith(f"wrote {tmp_path / PREDICTIONS}")
    assert "GFLOPs" not in summary_text(Path("ck.pyth"), {**report, "gflops_per_view": None}, tmp_path)
