"""The one evaluation path: `score` (multi-view scores + metrics) under both the periodic validation (`validate`)
and the test of a checkpoint (`test`, which also writes the reports).

Both score the same way: the views of each video through `forward` (a torch.compile'd one gets padded chunks), at
most test.max_views_per_forward views per forward pass, under the run's autocast dtype (settings.autocast_dtype).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mvit_video.data import build_dataset, build_loader
from mvit_video.data.lists import check_label_range
from mvit_video.eval import reports
from mvit_video.eval.metrics import summarize
from mvit_video.eval.multiview import MultiViewResult, run_multiview
from mvit_video.models.flops import count_gflops
from mvit_video.settings import RunConfig, autocast_dtype
from mvit_video.utils import distributed
from mvit_video.utils.errors import ConfigError

logger = logging.getLogger(__name__)


class ValidationStopped(Exception):
    """Raised by `validate` on every rank when its `stop` said so on some rank: the figures would be incomplete."""


@torch.no_grad()
def score(forward: nn.Module, loader: Iterable[dict[str, Any]], *, device: torch.device,
          amp_dtype: torch.dtype | None, max_views_per_forward: int, split: str,
          log_every: int = 10, stop: Callable[[], bool] | None = None) -> tuple[MultiViewResult, dict[str, Any]]:
    """Every video of `loader` (a test loader: K x S views per video) scored through `forward` and gathered over
    ranks, and its metrics (eval.metrics.summarize; NaN figures when nothing decoded). `split` names the list in
    the progress line. The labels are checked against the head before (trainer.check_labels for the val list,
    _check_classes for a test), not after the whole list has been scored. `stop`: run_multiview's."""
    result = run_multiview(forward, loader, device=device, amp_dtype=amp_dtype,
                           max_views_per_forward=max_views_per_forward, progress=split, log_every=log_every,
                           stop=stop)
    return result, summarize(result.labels, result.probs)


def validate(forward: nn.Module, loader: Iterable[dict[str, Any]], device: torch.device,
             amp_dtype: torch.dtype | None, max_views_per_forward: int, *,
             log_every: int = 10, stop: Callable[[], bool] | None = None) -> dict[str, Any] | None:
    """Periodic multi-view val through `forward`: {"top1", "top5", "videos", "failed"} on rank 0, None elsewhere;
    top1/top5 are None when no video could be decoded. `stop`, asked before each batch (training: a stop signal
    came), ends it early with ValidationStopped on every rank."""
    result, metrics = score(forward, loader, device=device, amp_dtype=amp_dtype,
                            max_views_per_forward=max_views_per_forward, split="val", log_every=log_every, stop=stop)
    if result.stopped:
        raise ValidationStopped(f"val stopped after {len(result) + len(result.failed)} videos")
    if not distributed.is_main():
        return None
    for path in result.failed:
        logger.warning("val: cannot decode %s (not scored)", path)
    if len(result) == 0:
        logger.warning("val: no video could be decoded (%d failed)", len(result.failed))
        # no accuracy, rather than a 0.0 that reads as a model that learned nothing
        return {"top1": None, "top5": None, "videos": 0, "failed": len(result.failed)}
    return {"top1": float(metrics["top1"]), "top5": float(metrics["top5"]), "videos": len(result),
            "failed": len(result.failed)}


def test(run: RunConfig, model: nn.Module, class_names: Sequence[str] | None = None, *,
         forward: nn.Module | None = None, epoch: int | None = None, count_flops: bool = True,
         checkpoint: str | os.PathLike | None = None, records_dir: str | os.PathLike | None = None,
         tensorboard_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Multi-view test of `model` (already on its device) on the `run.test.split` list; rank 0 writes the reports
    (eval.reports) to `records_dir` (default run.output_dir: training's final test) and the test scalars to
    `tensorboard_dir` (default <records_dir>/tensorboard).

    `forward` is what scores the views when it is not `model` itself (training's torch.compile'd model). `epoch`:
    the training epoch of the weights, the TensorBoard step of the test scalars (default solver.max_epoch, where
    training calls this). `checkpoint`: the file the weights came from. Both go into the metrics line, and the
    checkpoint's name into class errors. `class_names` (the checkpoint's) must equal the data's class list, or
    with test.allow_class_subset hold it (_check_classes).

    Returns (on every rank) the metrics.jsonl record plus "per_class", "failed" (paths), "gflops_per_view"
    (counted on rank 0 when `count_flops`; None elsewhere) and "seconds".
    """
    split, views = run.test.split, (run.test.num_ensemble_views, run.test.num_spatial_crops)
    rank, world = distributed.get_rank(), distributed.get_world_size()
    dataset = build_dataset(run, split)
    loader = build_loader(dataset, split, run.data_loader, batch_size=run.test.batch_size, seed=run.seed,
                          world_size=world, rank=rank)
    device = next(model.parameters()).device
    class_names = _check_classes(dataset, model, class_names, split, run.test.allow_class_subset, checkpoint)

    logger.info("testing %d videos of the %s list with %dx%d views on %d process(es)", len(dataset), split, *views,
                world)
    start = time.perf_counter()
    result, metrics = score(model if forward is None else forward, loader, device=device,
                            amp_dtype=autocast_dtype(run, device),
                            max_views_per_forward=run.test.max_views_per_forward, split=split,
                            log_every=run.log_period)
    seconds = time.perf_counter() - start

    names = list(class_names) if class_names else getattr(dataset, "class_names", None)
    # without an epoch: training's own test (at solver.max_epoch), or a checkpoint that records none (e.g. converted)
    tested_epoch = epoch if epoch is not None else (run.solver.max_epoch if checkpoint is None else None)
    record = {
        "split": "test",
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "epoch": tested_epoch,
        "list": split,
        "time": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "top1": _finite(metrics["top1"]),
        "top5": _finite(metrics["top5"]),
        "mean_class_acc": _finite(metrics["mean_class_acc"]),
        "views": list(views),
        "videos": len(result),
        "failed_videos": len(result.failed),
    }
    gflops = None
    if rank == 0:
        if count_flops:
            gflops = gflops_per_view(model, run.data.num_frames, run.data.test_crop_size)
        if gflops is not None:
            logger.info("%.2f GFLOPs/view x %dx%d views = %.2f GFLOPs/video", gflops, *views,
                        gflops * views[0] * views[1])
        record["gflops_per_view"] = gflops  # the cost of the tested model, for `python -m mvit_video.summary`
        out_dir = Path(records_dir if records_dir is not None else run.output_dir)
        reports.write_reports(out_dir, result, record, metrics["per_class"], names)
        reports.write_tensorboard(Path(tensorboard_dir) if tensorboard_dir is not None else out_dir / "tensorboard",
                                  record, tested_epoch or 0, run.yaml)
    distributed.barrier()  # when test() returns on any rank, the reports exist
    for path in result.failed:
        logger.warning("could not decode test video %s", path)
    logger.info("test top1 %.2f top5 %.2f mean class acc %.2f over %d videos (%d failed) in %.1f s",
                metrics["top1"], metrics["top5"], metrics["mean_class_acc"], len(result), len(result.failed),
                seconds)
    return {**record, "per_class": metrics["per_class"], "failed": list(result.failed),
            "gflops_per_view": gflops, "seconds": seconds}


def gflops_per_view(model: nn.Module, num_frames: int, crop_size: int) -> float | None:
    """fvcore GFLOPs of one [1, 3, T, crop, crop] view; None (with a warning) when counting fails."""
    net = distributed.unwrap(model)
    was_training = net.training
    try:
        net.eval()
        return float(count_gflops(net, (1, 3, num_frames, crop_size, crop_size)))
    except Exception as e:  # noqa: BLE001 -- a report only: never fail an evaluation because the tracer could not count
        logger.warning("could not count GFLOPs: %s", e)
        return None
    finally:
        net.train(was_training)


def _preview(names: Sequence[str], n: int = 4) -> str:
    shown = ", ".join(repr(x) for x in list(names)[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")


def _check_classes(dataset: Any, model: nn.Module, class_names: Sequence[str] | None, split: str,
                   allow_subset: bool, checkpoint: str | os.PathLike | None) -> list[str] | None:
    """Refuse, before testing, weights whose classes are not the data's: a head of another size than the data's
    class list, class names (the checkpoint's) that differ from the data's, or labels the head cannot predict;
    each a ConfigError naming both sides. With test.allow_class_subset the data's classes may be a subset of the
    checkpoint's: its labels are mapped to the checkpoint's indices by name (by index when either side has no
    names). Returns the class names the reports use."""
    head = getattr(getattr(distributed.unwrap(model), "config", None), "num_classes", None)
    names = list(getattr(dataset, "class_names", None) or []) or None
    ours = list(class_names) if class_names else None
    what = f"the checkpoint {checkpoint}" if checkpoint else "the model"
    data = f"the data's class list (classes.txt / labels.json in data.path_to_data_dir, {split} split)"
    hint = "; test.allow_class_subset=true evaluates data whose classes are a subset of the checkpoint's"
    if names and ours and names != ours:
        missing = [x for x in names if x not in ours]
        if not allow_subset or missing or len(set(names)) != len(names):
            why = f" ({len(missing)} of the data's classes are not the checkpoint's, e.g. {missing[0]!r})" \
                if missing else ""
            raise ConfigError(f"{what} has {len(ours)} classes ({_preview(ours)}) but {data} has {len(names)} "
                              f"({_preview(names)}){why}{'' if missing else hint}")
        index = {x: i for i, x in enumerate(ours)}
        dataset.labels = [index[names[label]] for label in dataset.labels]
        dataset.class_names, dataset.num_classes = ours, len(ours)
        logger.info("test.allow_class_subset: the %d classes of the %s list are scored among the checkpoint's %d "
                    "(labels mapped by class name)", len(names), split, len(ours))
    elif names and head is not None and len(names) != head:
        if not (allow_subset and len(names) < head):
            raise ConfigError(f"{what} has a {head}-class head but {data} has {len(names)} classes "
                              f"({_preview(names)}){hint if len(names) < head else ''}")
        logger.warning("test.allow_class_subset: the %d classes of the %s list are taken as the first %d of the "
                       "model's %d (no class names to match them by)", len(names), split, len(names), head)
    if head is not None:
        check_label_range(list(getattr(dataset, "labels", []) or []), head, listed=f"the {split} list",
                          classes=f"{what} has {head} classes (model.num_classes / the checkpoint's head)",
                          paths=getattr(dataset, "paths", None))
    return ours or names


def _finite(x: float | None) -> float | None:
    """NaN (no video scored) -> None, so that the JSON stays valid."""
    return None if x is None or math.isnan(x) else x
