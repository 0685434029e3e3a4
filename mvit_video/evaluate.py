"""Multi-view test of a checkpoint: `python -m mvit_video.evaluate +experiment=NAME test.checkpoint=PATH`.

Other settings as overrides, e.g. `test.num_ensemble_views=5 test.num_spatial_crops=3 test.split=val`; without
test.checkpoint the latest checkpoint of `<output_dir>/checkpoints` is tested. The clip settings (CLIP_KEYS:
frames, sampling rate, fps, crop, short side, mean/std) are the checkpoint's unless set on the command line; the
log says which were taken. `evaluate --config-path RUN --config-name config` re-tests a training run folder with
its saved config.yaml (output_dir = RUN, its latest checkpoint).

Writes to output_dir: predictions.jsonl (top-5 of each video's averaged distribution, with class names when known),
one line appended to metrics.jsonl, per_class_accuracy.csv, failed_videos.txt when some videos could not be decoded,
and the test metrics and resolved config to tensorboard/. Under torchrun
every rank scores its shard; rank 0 writes. `test(cfg, model, class_names)` is also what training calls at the end.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from mvit_video.config import compose, precheck_flag_run, split_hydra_args, build_config
from mvit_video.engine import distributed
from mvit_video.eval.metrics import summarize, topk_predictions
from mvit_video.eval.multiview import MultiViewResult, run_multiview
from mvit_video.utils.errors import ConfigError, UserError, cli_errors
from mvit_video.utils.io import append_jsonl, atomic_write_text
from mvit_video.utils.progress import TqdmLoggingHandler

logger = logging.getLogger("mvit_video.evaluate")  # not "__main__" under python -m

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.jsonl"
PER_CLASS = "per_class_accuracy.csv"
FAILED = "failed_videos.txt"


def _finite(x: float) -> float | None:
    """NaN (no video scored) -> None, so that the JSON stays valid."""
    return None if x is None or math.isnan(x) else x


def gflops_per_view(model: nn.Module, num_frames: int, crop_size: int) -> float | None:
    """fvcore GFLOPs of one [1, 3, T, crop, crop] view; None (with a warning) when counting fails."""
    from mvit_video.models.flops import count_gflops

    net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    was_training = net.training
    try:
        net.eval()
        return float(count_gflops(net, (1, 3, num_frames, crop_size, crop_size)))
    except Exception as e:  # noqa: BLE001 -- a report only: never fail an evaluation because the tracer could not count
        logger.warning("could not count GFLOPs: %s", e)
        return None
    finally:
        net.train(was_training)


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


def test(cfg: DictConfig, model: nn.Module, class_names: Sequence[str] | None = None, *,
         count_flops: bool = True, epoch: int | None = None, forward: nn.Module | None = None) -> dict[str, Any]:
    """Multi-view test of `model` (already on its device) on the `cfg.test.split` list; rank 0 writes the reports.

    `epoch`: the training epoch of the weights, the TensorBoard step of the test scalars (default solver.max_epoch,
    where training calls this). `forward` is what scores the views when it is not `model` itself (training's
    torch.compile'd model).

    Returns (on every rank) the metrics.jsonl record plus "per_class", "failed" (paths), "gflops_per_view"
    (counted on rank 0 when `count_flops`; None elsewhere) and "seconds".
    """
    from mvit_video.data import build_dataset, build_loader

    split = str(cfg.test.split)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"config key 'test.split': expected train, val or test (the list file), got {split!r}")
    chunk = int(cfg.test.max_views_per_forward)
    if chunk < 1:
        raise ConfigError(f"config key 'test.max_views_per_forward': expected >= 1, got {chunk}")
    rank, world = distributed.get_rank(), distributed.get_world_size()
    k_views, s_crops = int(cfg.test.num_ensemble_views), int(cfg.test.num_spatial_crops)
    dataset = build_dataset(cfg, split)
    loader = build_loader(cfg, split, dataset, world_size=world, rank=rank)
    device = next(model.parameters()).device
    _check_labels(dataset, model, class_names, split)
    amp_dtype = str(cfg.train.amp_dtype) if cfg.train.mixed_precision and device.type == "cuda" else None

    logger.info("testing %d videos of the %s list with %dx%d views on %d process(es)", len(dataset), split,
                k_views, s_crops, world)
    start = time.perf_counter()
    result = run_multiview(model if forward is None else forward, loader, device=device, amp_dtype=amp_dtype,
                           max_views_per_forward=chunk, progress=split, log_every=int(cfg.log_period))
    seconds = time.perf_counter() - start

    num_classes = result.probs.shape[1] if len(result) else 0
    if len(result) and int(result.labels.max()) >= num_classes:
        raise ConfigError(
            f"the {split} list has label {int(result.labels.max())} but the model has {num_classes} classes"
            " (model.num_classes / the checkpoint's head)"
        )
    metrics = summarize(result.labels, result.probs)
    names = list(class_names) if class_names else getattr(dataset, "class_names", None)
    record = {
        "split": "test",
        "top1": _finite(metrics["top1"]),
        "top5": _finite(metrics["top5"]),
        "mean_class_acc": _finite(metrics["mean_class_acc"]),
        "views": [k_views, s_crops],
        "videos": len(result),
        "failed_videos": len(result.failed),
    }
    gflops = None
    if rank == 0:
        if count_flops:
            gflops = gflops_per_view(model, int(cfg.data.num_frames), int(cfg.data.test_crop_size))
        if gflops is not None:
            logger.info("%.2f GFLOPs/view x %dx%d views = %.2f GFLOPs/video", gflops, k_views, s_crops,
                        gflops * k_views * s_crops)
        record["gflops_per_view"] = gflops  # the cost of the tested model, for `python -m mvit_video.summary`
        _write_reports(Path(cfg.output_dir), result, record, metrics["per_class"], names)
        _write_tensorboard(cfg, record, epoch)
    distributed.barrier()  # when test() returns on any rank, the reports exist
    for path in result.failed:
        logger.warning("could not decode test video %s", path)
    logger.info("test top1 %.2f top5 %.2f mean class acc %.2f over %d videos (%d failed) in %.1f s",
                metrics["top1"], metrics["top5"], metrics["mean_class_acc"], len(result), len(result.failed),
                seconds)
    return {**record, "per_class": metrics["per_class"], "failed": list(result.failed),
            "gflops_per_view": gflops, "seconds": seconds}


def _check_labels(dataset: Any, model: nn.Module, class_names: Sequence[str] | None, split: str) -> None:
    """Fail before testing when the list has labels the model cannot predict; warn when class names differ."""
    net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    num_classes = getattr(getattr(net, "config", None), "num_classes", None)
    labels = list(getattr(dataset, "labels", []) or [])
    if num_classes is not None and labels and max(labels) >= num_classes:
        raise ConfigError(
            f"the {split} list has label {max(labels)} but the model has {num_classes} classes"
            " (model.num_classes / the checkpoint's head)"
        )
    names = getattr(dataset, "class_names", None)
    if class_names and names and list(class_names) != list(names):
        logger.warning("the checkpoint's class names differ from the dataset's; reports use the checkpoint's")


def _write_reports(out_dir: Path, result: MultiViewResult, record: dict[str, Any],
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


def _write_tensorboard(cfg: DictConfig, record: dict[str, Any], epoch: int | None) -> None:
    """Test metrics as scalars (test/top1, test/top5, test/mean_class_acc) and the resolved config as text, into
    <output_dir>/tensorboard next to training's curves."""
    from torch.utils.tensorboard import SummaryWriter

    from mvit_video.config import to_yaml

    step = int(epoch if epoch is not None else cfg.solver.max_epoch)
    writer = SummaryWriter(str(Path(cfg.output_dir) / "tensorboard"))
    try:
        for key in ("top1", "top5", "mean_class_acc"):
            if record.get(key) is not None:
                writer.add_scalar(f"test/{key}", record[key], step)
        # 4-space indent: TensorBoard renders text as markdown, where an indented block keeps the YAML layout
        writer.add_text("config", "".join("    " + line + "\n" for line in to_yaml(cfg).splitlines()), step)
    finally:
        writer.close()


def latest_checkpoint(output_dir: str | Path) -> Path:
    """The checkpoint furthest into training in `<output_dir>/checkpoints`; UserError when there is none."""
    from mvit_video.checkpoint import checkpoint_dir, find_latest

    found = find_latest(output_dir)
    if found is None:
        raise UserError(f"no checkpoint in {checkpoint_dir(output_dir)}: pass test.checkpoint=PATH or train first")
    return Path(found)


# How a test clip is sampled and shaped: taken from the checkpoint unless set on the command line.
CLIP_KEYS = ("num_frames", "sampling_rate", "target_fps", "test_crop_size", "train_jitter_scales",
             "use_offset_sampling", "mean", "std")


def follow_checkpoint(cfg: DictConfig, data_config: dict[str, Any] | None, path: Path,
                      explicit: Sequence[str] = ()) -> list[str]:
    """Use the checkpoint's clip settings (CLIP_KEYS of its data_config) where the config differs, except for keys
    set explicitly on the command line (`explicit`: data.<key> names), which win with a warning. Logs and returns
    the adopted settings as `data.key=value` strings."""
    if not data_config:
        return []
    explicit = {e.lstrip("+~") for e in explicit}
    adopted, kept = [], []
    for key in CLIP_KEYS:
        if key not in data_config or key not in cfg.data:
            continue
        ours, theirs = cfg.data[key], data_config[key]
        ours = list(ours) if not isinstance(ours, (int, float, str)) else ours
        if ours == theirs:
            continue
        if f"data.{key}" in explicit:
            kept.append(f"data.{key}={ours} (checkpoint: {theirs})")
            continue
        with open_dict(cfg):
            cfg.data[key] = theirs
        adopted.append(f"data.{key}={theirs}")
    if adopted:
        logger.info("clip settings from the checkpoint %s: %s (set them on the command line to override)", path,
                    ", ".join(adopted))
    if kept:
        logger.warning("testing with settings that differ from how %s was trained, as set on the command line: %s",
                       path, ", ".join(kept))
    return adopted


@cli_errors
def run(cfg: DictConfig, explicit: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate test.checkpoint (or the latest checkpoint of output_dir) and print the report on rank 0.

    Clip settings (CLIP_KEYS) come from the checkpoint unless their key is in `explicit` (set on the command line)."""
    from mvit_video.models import load_checkpoint_info, load_model

    device_type = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    rank, _, local_rank = distributed.init_distributed(device_type)
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[TqdmLoggingHandler(sys.stderr)])  # records go above the progress bar
    try:
        build_config(cfg, world_size=distributed.get_world_size())
        path = Path(cfg.test.checkpoint) if cfg.test.checkpoint else latest_checkpoint(cfg.output_dir)
        info = load_checkpoint_info(path)
        if follow_checkpoint(cfg, info.get("data_config"), path, explicit):
            build_config(cfg, world_size=distributed.get_world_size())
        device = torch.device("cuda", local_rank) if device_type == "cuda" else torch.device("cpu")
        model = load_model(path, use_ema=bool(cfg.test.use_ema)).to(device)
        report = test(cfg, model, info.get("class_names"), epoch=info.get("epoch"))
        if distributed.is_main():
            _print_report(cfg, path, report)
        return report
    finally:
        distributed.cleanup()


def _print_report(cfg: DictConfig, path: Path, report: dict[str, Any]) -> None:
    """The human summary: accuracy, cost of the run in GFLOPs, failed videos."""
    k, s = report["views"]

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    print(f"checkpoint: {path}")
    print(f"top1 {fmt(report['top1'])}  top5 {fmt(report['top5'])}  mean class acc {fmt(report['mean_class_acc'])}"
          f"  ({report['videos']} videos, {k}x{s} views, {report['seconds']:.1f} s)")
    g = report["gflops_per_view"]
    if g is not None:
        print(f"{g:.2f} GFLOPs/view x {k}x{s} views = {g * k * s:.2f} GFLOPs/video")
    print(f"failed videos: {report['failed_videos']}")
    for p in report["failed"]:
        print(f"  {p}")
    print(f"wrote {Path(cfg.output_dir) / PREDICTIONS}, {Path(cfg.output_dir) / PER_CLASS}, "
          f"appended {Path(cfg.output_dir) / METRICS}")


def _hydra_entry() -> None:
    """Hydra's own entry point, for its flags (--cfg job, --help, --multirun)."""

    @hydra.main(version_base=None, config_path="../conf", config_name="config")
    def hydra_main(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        run(cfg, [o.split("=", 1)[0] for o in HydraConfig.get().overrides.task])

    hydra_main()


@cli_errors
def _single_run(overrides: list[str]) -> None:
    run(compose(overrides), [o.split("=", 1)[0] for o in overrides])


def _run_dir_args(args: list[str]) -> list[str]:
    """`--config-path RUN --config-name config` re-tests a training run from its saved config.yaml: RUN is made
    absolute (Hydra would read it relative to this file), output_dir defaults to RUN, and Hydra writes no
    outputs/<date>/ folder or log of its own (the saved config has no hydra section)."""
    overrides, flags = split_hydra_args(args)
    run_dir = flags.get("--config-path", flags.get("-cp"))
    if run_dir is None:
        return args
    run_dir_abs = str(Path(run_dir).expanduser().resolve())
    out = []
    for i, a in enumerate(args):
        if a in ("--config-path", "-cp") or (i > 0 and args[i - 1] in ("--config-path", "-cp")):
            out.append(run_dir_abs if a == run_dir else a)
        elif a.startswith(("--config-path=", "-cp=")):
            out.append(a.split("=", 1)[0] + "=" + run_dir_abs)
        else:
            out.append(a)
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    extra = [f"{k}={v}" for k, v in (("output_dir", run_dir_abs), ("hydra.run.dir", run_dir_abs),
                                      ("hydra.output_subdir", "null"), ("hydra/job_logging", "none"),
                                      ("hydra/hydra_logging", "none")) if k not in keys]
    return out + extra


@cli_errors
def _precheck(args: list[str]) -> None:
    precheck_flag_run(args)


def main() -> None:
    """CLI: plain `key=value` runs compose with Hydra's compose API (a bad key is one error line), as train does."""
    args = sys.argv[1:]
    if any(a.startswith("-") for a in args):
        sys.argv[1:] = args = _run_dir_args(args)
        _precheck(args)
        _hydra_entry()
        return
    _single_run(args)


if __name__ == "__main__":
    main()
