"""The one evaluation path: `score` (multi-view scores + metrics) under both the periodic validation (`validate`)
and the test of a checkpoint (`test`, which also writes the reports).

Both score the same way: the views of each video through `forward` (a torch.compile'd one gets padded chunks), at
most test.max_views_per_forward views per forward pass, under the run's autocast dtype (settings.autocast_dtype).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mvit_video.engine import distributed
from mvit_video.eval import reports
from mvit_video.eval.metrics import summarize
from mvit_video.eval.multiview import MultiViewResult, run_multiview
from mvit_video.settings import RunConfig, autocast_dtype
from mvit_video.utils.errors import ConfigError

logger = logging.getLogger(__name__)


@torch.no_grad()
def score(forward: nn.Module, loader: Iterable[dict[str, Any]], *, device: torch.device,
          amp_dtype: torch.dtype | None, max_views_per_forward: int, split: str,
          log_every: int = 10) -> tuple[MultiViewResult, dict[str, Any]]:
    """Every video of `loader` (a test loader: K x S views per video) scored through `forward` and gathered over
    ranks, and its metrics (eval.metrics.summarize; NaN figures when nothing decoded). `split` names the list in
    the progress line and in errors."""
    result = run_multiview(forward, loader, device=device, amp_dtype=amp_dtype,
                           max_views_per_forward=max_views_per_forward, progress=split, log_every=log_every)
    num_classes = result.probs.shape[1] if len(result) else 0
    if len(result) and int(result.labels.max()) >= num_classes:
        raise ConfigError(f"the {split} list has label {int(result.labels.max())} but the model has {num_classes} "
                          f"classes (model.num_classes / the checkpoint's head)")
    return result, summarize(result.labels, result.probs)


def validate(forward: nn.Module, loader: Iterable[dict[str, Any]], device: torch.device,
             amp_dtype: torch.dtype | None, max_views_per_forward: int, *,
             log_every: int = 10) -> dict[str, Any] | None:
    """Periodic multi-view val through `forward`: {"top1", "top5", "videos", "failed"} on rank 0, None elsewhere;
    top1/top5 are None when no video could be decoded."""
    result, metrics = score(forward, loader, device=device, amp_dtype=amp_dtype,
                            max_views_per_forward=max_views_per_forward, split="val", log_every=log_every)
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
         forward: nn.Module | None = None, epoch: int | None = None, count_flops: bool = True) -> dict[str, Any]:
    """Multi-view test of `model` (already on its device) on the `run.test.split` list; rank 0 writes the reports
    (eval.reports) to run.output_dir.

    `forward` is what scores the views when it is not `model` itself (training's torch.compile'd model). `epoch`:
    the training epoch of the weights, the TensorBoard step of the test scalars (default solver.max_epoch, where
    training calls this).

    Returns (on every rank) the metrics.jsonl record plus "per_class", "failed" (paths), "gflops_per_view"
    (counted on rank 0 when `count_flops`; None elsewhere) and "seconds".
    """
    from mvit_video.data import build_dataset, build_loader

    split, views = run.test.split, (run.test.num_ensemble_views, run.test.num_spatial_crops)
    rank, world = distributed.get_rank(), distributed.get_world_size()
    dataset = build_dataset(run, split)
    loader = build_loader(dataset, split, run.data_loader, batch_size=run.test.batch_size, seed=run.seed,
                          world_size=world, rank=rank)
    device = next(model.parameters()).device
    _check_labels(dataset, model, class_names, split)

    logger.info("testing %d videos of the %s list with %dx%d views on %d process(es)", len(dataset), split, *views,
                world)
    start = time.perf_counter()
    result, metrics = score(model if forward is None else forward, loader, device=device,
                            amp_dtype=autocast_dtype(run, device),
                            max_views_per_forward=run.test.max_views_per_forward, split=split,
                            log_every=run.log_period)
    seconds = time.perf_counter() - start

    names = list(class_names) if class_names else getattr(dataset, "class_names", None)
    record = {
        "split": "test",
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
        out_dir = Path(run.output_dir)
        reports.write_reports(out_dir, result, record, metrics["per_class"], names)
        reports.write_tensorboard(out_dir, record, epoch if epoch is not None else run.solver.max_epoch, run.yaml)
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
    from mvit_video.models.flops import count_gflops

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


def _check_labels(dataset: Any, model: nn.Module, class_names: Sequence[str] | None, split: str) -> None:
    """Fail before testing when the list has labels the model cannot predict; warn when class names differ."""
    num_classes = getattr(getattr(distributed.unwrap(model), "config", None), "num_classes", None)
    labels = list(getattr(dataset, "labels", []) or [])
    if num_classes is not None and labels and max(labels) >= num_classes:
        raise ConfigError(f"the {split} list has label {max(labels)} but the model has {num_classes} classes"
                          " (model.num_classes / the checkpoint's head)")
    names = getattr(dataset, "class_names", None)
    if class_names and names and list(class_names) != list(names):
        logger.warning("the checkpoint's class names differ from the dataset's; reports use the checkpoint's")


def _finite(x: float | None) -> float | None:
    """NaN (no video scored) -> None, so that the JSON stays valid."""
    return None if x is None or math.isnan(x) else x
