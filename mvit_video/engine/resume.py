"""Resuming a run: whether a checkpoint may be resumed with the current settings, and where training goes on."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from mvit_video import checkpoint as ck
from mvit_video.checkpoint import plain
from mvit_video.engine.loop import TrainState
from mvit_video.utils import distributed as du
from mvit_video.models.config import MViTConfig, per_block_lists
from mvit_video.settings import RunConfig, model_key
from mvit_video.utils.errors import UserError
from mvit_video.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

# Keys whose change makes the resumed run another run: the LR at the resume point moves (warned about).
SCHEDULE_KEYS = ("solver.base_lr", "solver.max_epoch", "solver.warmup_epochs", "solver.warmup_start_lr",
                 "solver.cosine_end_lr", "solver.cosine_after_warmup", "solver.base_lr_scale_num_shards",
                 "train.batch_size", "train.grad_accum_steps", "num_shards")
# Keys that change the optimizer's state layout: it cannot be resumed.
OPTIMIZER_KEYS = ("solver.optimizing_method", "solver.zero_wd_1d_param", "solver.zero_decay_pos_cls")
# Settings that only describe the per-block plan (compared through per_block_lists).
_PER_BLOCK_KEYS = ("depth", "depths", "pool_q_stride", "dim_mul", "head_mul")


@dataclass
class ResumePoint:
    """Where training continues: completed epochs, global batches into the next epoch, this rank's RNG state,
    and the loss/accuracy sums of the batches done before (so the epoch's metrics line covers all of it)."""

    epoch: int = 0
    batch: int = 0
    rng: dict | None = None
    partial: dict | None = None
    path: str | None = None  # the checkpoint resumed from (None: a fresh start)
    origin: str | None = None  # the train.resume_from this run's history started from (origin_of), saved onward


def _select(tree: Any, key: str) -> Any:
    """The value at dotted `key` of a parsed YAML mapping, or None."""
    for part in key.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def _changed(old: dict, new: dict, keys: tuple[str, ...]) -> list[str]:
    """'key old -> new' for each of `keys` whose value differs between two configs (parsed YAML)."""
    out = []
    for key in keys:
        a, b = _select(old, key), _select(new, key)
        if a is not None and a != b:
            out.append(f"{key} {a} -> {b}")
    return out


def check_resumable(saved: dict[str, Any], cfg: RunConfig, model: torch.nn.Module, path: Path | None) -> None:
    """Refuse a checkpoint of another architecture or optimizer (one line naming the keys); warn about changed
    schedule or model settings that still load."""
    differ = model_changes(saved.get("model_config") or {}, cfg.model)
    weights, shapes = saved.get("model") or {}, {k: v.shape for k, v in model.state_dict().items()}
    shapes_ok = weights.keys() == shapes.keys() and all(weights[k].shape == shapes[k] for k in shapes)
    advice = (f"use another output_dir, or train.auto_resume=false to start over in {cfg.output_dir} (the old "
              f"run's files move to {Path(cfg.output_dir) / PREVIOUS}/)")
    if not shapes_ok:
        raise UserError(f"cannot resume from {path}: it is another architecture "
                        f"({'; '.join(differ) or 'different weights'}); {advice}")
    old = yaml.safe_load(saved["cfg"]) if isinstance(saved.get("cfg"), str) else {}
    new = yaml.safe_load(cfg.yaml) or {}
    optimizer = _changed(old or {}, new, OPTIMIZER_KEYS)
    if optimizer:
        raise UserError(f"cannot resume from {path}: the optimizer changed ({'; '.join(optimizer)}); {advice}")
    changed = _changed(old or {}, new, SCHEDULE_KEYS) + differ
    if changed:
        logger.warning("resuming from %s with changed settings (the LR schedule and results differ from an "
                       "unchanged run): %s", path, "; ".join(changed))


def model_changes(theirs: dict[str, Any], config: MViTConfig) -> list[str]:
    """'key old -> new' for the network settings that differ between a checkpoint's model_config and `config`.
    The per-block lists count as equal when they resolve to the same lists: a config written by stages
    (mvit.depths) and an older one with PySlowFast's explicit lists describe the same network."""
    own = plain(dataclasses.asdict(config))
    keys = [k for k in own if k in theirs and theirs[k] != own[k]]
    try:
        old = MViTConfig.from_dict(theirs)
        same_blocks = old.depth == config.depth and per_block_lists(old) == per_block_lists(config)
    except (UserError, TypeError, ValueError):
        same_blocks = False
    if same_blocks:
        keys = [k for k in keys if k not in _PER_BLOCK_KEYS]
    return [f"{model_key(k)} {theirs[k]} -> {own[k]}" for k in keys]


def restore(state: TrainState, saved: dict[str, Any], world: int, iters_per_epoch: int,
            batch_size: int) -> ResumePoint:
    """Load weights, optimizer, scaler, EMA and step count from a training checkpoint; return where to go on."""
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    if state.scaler is not None and saved.get("scaler"):
        state.scaler.load_state_dict(saved["scaler"])
    if state.ema is not None:
        state.ema.load_state_dict(saved["ema"] if saved.get("ema") else state.model.state_dict())
    state.step = int(saved["scheduler"]["step"])
    position = saved.get("sampler") or {}
    # A global batch index: global batch b holds samples [b*B, (b+1)*B) of the epoch's permutation whatever the
    # number of processes (each rank takes every world-th of them), so it is not rescaled.
    batch = int(position.get("batches_done", 0))
    saved_world = int(position.get("world_size", world))
    saved_batch = int(position.get("batch_size", batch_size))
    if batch and saved_batch != batch_size:
        batch = min(batch * saved_batch // batch_size, iters_per_epoch)  # samples done, in the new batch size
        logger.warning("train.batch_size changed %d -> %d mid-epoch: continuing at batch %d", saved_batch,
                       batch_size, batch)
    rngs = saved.get("rng") or []
    if saved_world != world:
        logger.warning("resuming with %d process%s instead of %d: epoch %d continues at global batch %d/%d (same "
                       "samples, same augmentation); the per-process RNG streams (dropout, drop path, mixup) %s",
                       world, "es" if world > 1 else "", saved_world, int(saved["epoch"]) + 1, batch,
                       iters_per_epoch, "restart from the seed" if len(rngs) != world else "are restored")
    return ResumePoint(epoch=int(saved["epoch"]), batch=batch, path=None,
                       rng=rngs[du.get_rank()] if len(rngs) == world else None, partial=position.get("partial"))


def truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop train/val lines of epochs after `epochs_done` (and torn lines) from metrics.jsonl: the resumed run
    redoes those epochs, and each epoch appears once. Test lines stay. Atomic rewrite."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    keep = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # half a line from a kill during the write
        if isinstance(record, dict) and int(record.get("epoch", 0) or 0) <= epochs_done:
            keep.append(line)
    if len(keep) != len(lines):
        atomic_write_text("".join(f"{x}\n" for x in keep), path)
        logger.info("metrics.jsonl: removed %d line(s) beyond epoch %d (redone from the checkpoint)",
                    len(lines) - len(keep), epochs_done)


# Reports of a run's weights (its final test, evaluate's eval/, summary's plots) and its TensorBoard curves: a rewind
# (train.resume_from an earlier checkpoint of the run) moves these aside with the checkpoints of the abandoned future.
_REPORT_FILES = ("tensorboard", "eval", "predictions.jsonl", "per_class_accuracy.csv", "failed_videos.txt",
                 "summary.png", "confusion.png", "per_class.csv")
# What a run writes into its output_dir: a fresh start moves exactly these aside. A fixed list, never "everything":
# output_dir may be a folder holding other things.
RUN_FILES = ("checkpoints", "metrics.jsonl", "bad_videos.txt", "config.yaml", "train.log", *_REPORT_FILES)
PREVIOUS = "previous"


def requeued() -> str | None:
    """Why this process is a restart of the same job (SLURM requeue, torchrun elastic restart), or None: such a
    restart continues its run even with train.auto_resume=false, or a requeue after preemption would wipe it."""
    for var, what in (("SLURM_RESTART_COUNT", "SLURM requeue"), ("TORCHELASTIC_RESTART_COUNT", "torchrun restart")):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return f"{what} #{value}"
    return None


def _previous_dir(output_dir: Path) -> Path:
    """A new, empty output_dir/previous/<UTC time>/."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = output_dir / PREVIOUS / stamp
    n = 1
    while dest.exists():  # two fresh starts within one second
        dest, n = output_dir / PREVIOUS / f"{stamp}-{n}", n + 1
    dest.mkdir(parents=True)
    return dest


def move_previous_run(output_dir: Path) -> Path | None:
    """Move an earlier run's files (RUN_FILES) from output_dir into output_dir/previous/<UTC time>/, so that a
    fresh start shares no checkpoints/ or metrics.jsonl with it and nothing of it can be resumed or evaluated by
    default. Returns the folder they went to, or None when there was nothing. Call with the run lock held."""
    present = [output_dir / name for name in RUN_FILES if (output_dir / name).exists()]
    if not present:
        return None
    dest = _previous_dir(output_dir)
    for p in present:
        os.replace(p, dest / p.name)  # a rename within one filesystem: atomic, no copy of 400 MB checkpoints
    return dest


def origin_of(resume_from: str | Path) -> str:
    """How a checkpoint records the train.resume_from its run's history started from: the absolute path."""
    return str(Path(resume_from).resolve())


def descends_from(saved: dict[str, Any] | None, resume_from: str | Path) -> bool:
    """Whether checkpoint contents `saved` were written by a run that started from train.resume_from (or by its
    reruns and requeues, which continue that history)."""
    return saved is not None and saved.get("origin") == origin_of(resume_from)


def _position(path: Path) -> tuple[int, int] | None:
    """(epochs done, batches into the next) a checkpoint holds, read without its tensors; None when unreadable."""
    try:
        saved = ck.load(path, mmap=True)
        return int(saved["epoch"]), ck.batches_done(saved)
    except (UserError, KeyError, TypeError, ValueError):
        return None


def _rewind(output_dir: Path, start: Path) -> Path | None:
    """train.resume_from names a checkpoint of output_dir's own run: move the checkpoints past its position and the
    reports of that abandoned future aside, copy metrics.jsonl there (truncate_metrics cuts it at the start)."""
    at = _position(start)
    if at is None:
        return None
    ckdir = ck.checkpoint_dir(output_dir)
    ahead = [p for p in sorted(ckdir.glob("*.pyth")) if (_position(p) or (-1, 0)) > at]
    if not ahead:
        return None
    dest = _previous_dir(output_dir)
    (dest / ckdir.name).mkdir()
    for p in ahead:
        os.replace(p, dest / ckdir.name / p.name)
    for name in _REPORT_FILES:
        if (output_dir / name).exists():
            os.replace(output_dir / name, dest / name)
    metrics = output_dir / "metrics.jsonl"
    if metrics.is_file():
        shutil.copy2(metrics, dest / metrics.name)
    return dest


def set_aside_for_resume_from(cfg: RunConfig, output_dir: Path) -> str | None:
    """train.resume_from=X: make output_dir hold one history. When its latest checkpoint descends from X (the same
    command again, a requeue) nothing moves: training continues from that checkpoint. Otherwise X starts the run
    over, and what would mix with it goes to output_dir/previous/<UTC time>/ (moved, never deleted): with X one of
    output_dir's own checkpoints, the checkpoints past X and the reports of that future (metrics.jsonl copied, then
    cut at X as on any resume); with X from elsewhere, the whole earlier run, as a fresh start moves it. Rank 0
    moves, every rank waits. Returns the line to log, or None when nothing moved."""
    if not cfg.train.resume_from:
        return None
    start, dest = Path(cfg.train.resume_from), None
    if du.is_main() and start.is_file() and not descends_from(ck.load_latest(output_dir, mmap=True)[1], start):
        if start.resolve().parent == ck.checkpoint_dir(output_dir).resolve():
            dest = _rewind(output_dir, start)
        else:
            dest = move_previous_run(output_dir)
    du.barrier()  # no rank reads output_dir's checkpoints before they are sorted out
    if dest is None:
        return None
    return (f"train.resume_from={start}: the files in {output_dir} from another history (past that checkpoint, "
            f"or another run) were moved to {dest}")


def fresh_start(cfg: RunConfig, output_dir: Path) -> str | None:
    """train.auto_resume=false (and no train.resume_from): rank 0 moves an earlier run's files aside
    (move_previous_run); every rank waits for it. Returns the one line to log, or None when nothing was done.
    A requeued or restarted job (requeued()) keeps its files: it is this run, continuing."""
    if cfg.train.auto_resume or cfg.train.resume_from:
        return None
    again = requeued()
    if again is not None:
        return (f"train.auto_resume=false but this is a {again} of the same job: continuing its run in "
                f"{output_dir} (the files are this run's own)")
    dest = move_previous_run(output_dir) if du.is_main() else None
    du.barrier()  # no rank looks into output_dir before the old run is out of it
    if dest is None:
        return None
    return (f"train.auto_resume=false: starting a fresh run; the previous run's files in {output_dir} were moved "
            f"to {dest}")
