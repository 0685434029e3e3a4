"""What a test writes: predictions.jsonl, per_class_accuracy.csv, failed_videos.txt, one line of metrics.jsonl
and TensorBoard scalars; where (the run's own folder for training's final test, `eval/<checkpoint>/` for
evaluate: `eval_dir`); which test is the latest (`latest_test`); and the human summary the evaluate command prints.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mvit_video.eval.metrics import topk_predictions
from mvit_video.eval.multiview import MultiViewResult
from mvit_video.utils.io import append_jsonl, atomic_write_text, read_jsonl

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.jsonl"
PER_CLASS = "per_class_accuracy.csv"
FAILED = "failed_videos.txt"
EVAL = "eval"  # <output_dir>/eval/<checkpoint name>/: evaluate's records, one folder per checkpoint


def prediction_lines(result: MultiViewResult, k: int = 5, class_names: Sequence[str] | None = None) -> list[str]:
    """One JSON line per scored video: {"video", "label", "topk": [[class_index, prob], ...] best first} plus,
    when class names are known, "label_name" and "topk_names" (the names of the topk classes, same order)."""
    if len(result) == 0:
        return []
    values, indices = topk_predictions(result.probs, k)
    lines = []
    for path, label, v, i in zip(result.paths, result.labels.tolist(), values.tolist(), indices.tolist()):
        row: dict[str, Any] = {"video": path, "label": label, "topk": [[c, round(p, 6)] for c, p in zip(i, v)]}
        if class_names:
            row["label_name"] = _name(class_names, label)
            row["topk_names"] = [_name(class_names, c) for c in i]
        lines.append(json.dumps(row))
    return lines


def _name(class_names: Sequence[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def per_class_csv(per_class: list[dict[str, Any]], class_names: Sequence[str] | None) -> str:
    """CSV text: class_index, name, videos, top1 (percent; empty when the class has no test video)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["class_index", "name", "videos", "top1"])
    for c, row in enumerate(per_class):
        name = class_names[c] if class_names and c < len(class_names) else str(c)
        top1 = "" if row["top1"] is None else f"{row['top1']:.4f}"
        writer.writerow([c, name, row["videos"], top1])
    return out.getvalue()


def write_reports(out_dir: Path, result: MultiViewResult, record: dict[str, Any],
                  per_class: list[dict[str, Any]], class_names: Sequence[str] | None) -> None:
    """predictions.jsonl, per_class_accuracy.csv, failed_videos.txt (atomically), then the metrics.jsonl line."""
    lines = prediction_lines(result, class_names=class_names)
    atomic_write_text("".join(line + "\n" for line in lines), out_dir / PREDICTIONS)
    atomic_write_text(per_class_csv(per_class, class_names), out_dir / PER_CLASS)
    if result.failed:
        atomic_write_text("".join(p + "\n" for p in result.failed), out_dir / FAILED)
    elif (out_dir / FAILED).exists():
        (out_dir / FAILED).unlink()  # a stale list from an earlier run would mislead
    append_jsonl(record, out_dir / METRICS)  # last: the metrics line only appears once the reports exist


def write_tensorboard(log_dir: Path, record: dict[str, Any], step: int, config_yaml: str) -> None:
    """Test metrics as scalars (test/top1, test/top5, test/mean_class_acc) at `step` (the tested checkpoint's
    epoch) and the resolved config as text, into the event folder `log_dir` (a new event file: never one a live
    writer holds)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    try:
        for key in ("top1", "top5", "mean_class_acc"):
            if record.get(key) is not None:
                writer.add_scalar(f"test/{key}", record[key], step)
        # 4-space indent: TensorBoard renders text as markdown, where an indented block keeps the YAML layout
        writer.add_text("config", "".join("    " + line + "\n" for line in config_yaml.splitlines()), step)
    finally:
        writer.close()


def eval_dir(output_dir: str | os.PathLike, checkpoint: str | os.PathLike) -> Path:
    """Where `evaluate` writes the records of `checkpoint`: <output_dir>/eval/<name>, never the training's own
    files (a live run may be writing them). <name> is the file's stem for a checkpoint of output_dir's own
    checkpoints/ folder (eval/checkpoint_epoch_00010), else the stem and a hash of its absolute path (two
    checkpoint_epoch_00010.pyth of different runs get different folders)."""
    output_dir, checkpoint = Path(output_dir), Path(checkpoint)
    stem = checkpoint.name.removesuffix(".pyth").removesuffix(".pt").removesuffix(".pth")
    try:
        own = checkpoint.resolve().parent == (output_dir / "checkpoints").resolve()
    except OSError:
        own = False
    if not own:
        stem += "-" + hashlib.sha1(str(checkpoint.resolve()).encode()).hexdigest()[:8]
    return output_dir / EVAL / stem


def latest_test(run_dir: str | os.PathLike) -> tuple[dict[str, Any], Path] | None:
    """The newest test record of a run folder and the folder holding its predictions: the run's own test line
    (<run_dir>/metrics.jsonl) or an evaluation's (<run_dir>/eval/*/metrics.jsonl), newest by its "time" (records
    written before tests carried a time count as oldest; within a file the later line is newer). None when there
    is no test record."""
    run_dir = Path(run_dir)
    folders = [run_dir] + (sorted(p for p in (run_dir / EVAL).iterdir() if p.is_dir())
                           if (run_dir / EVAL).is_dir() else [])
    best: tuple[str, dict[str, Any], Path] | None = None
    for folder in folders:
        for record in read_jsonl(folder / METRICS):
            if record.get("split") == "test":
                stamp = str(record.get("time") or "")
                if best is None or stamp >= best[0]:
                    best = (stamp, record, folder)
    return None if best is None else (best[1], best[2])


def summary_text(checkpoint: Path, report: dict[str, Any], out_dir: Path) -> str:
    """The human summary of a test report (what `test` returns): accuracy, cost in GFLOPs, failed videos, files."""
    k, s = report["views"]

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    epoch = report.get("epoch")
    lines = [f"checkpoint: {checkpoint}" + (f" (epoch {epoch})" if epoch is not None else ""),
             f"top1 {fmt(report['top1'])}  top5 {fmt(report['top5'])}  mean class acc {fmt(report['mean_class_acc'])}"
             f"  ({report['videos']} videos, {k}x{s} views, {report['seconds']:.1f} s)"]
    g = report["gflops_per_view"]
    if g is not None:
        lines.append(f"{g:.2f} GFLOPs/view x {k}x{s} views = {g * k * s:.2f} GFLOPs/video")
    lines.append(f"failed videos: {report['failed_videos']}")
    lines += [f"  {p}" for p in report["failed"]]
    lines.append(f"wrote {out_dir / PREDICTIONS}, {out_dir / PER_CLASS}, appended to {out_dir / METRICS}")
    return "\n".join(lines)
