"""One training epoch (AMP, grad accumulation, clipping, EMA, NaN stop, preemption); the periodic val is
mvit_video.eval.testing.validate."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.utils import distributed as du
from mvit_video.engine.ema import ModelEma
from mvit_video.engine.optim import Schedule, lr_at, set_lr
from mvit_video.engine.preempt import PreemptionHandler  # noqa: F401 -- its old home: the import path keeps working
from mvit_video.utils.deprecation import moved
from mvit_video.utils.errors import UserError
from mvit_video.utils.progress import format_eta

logger = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """The loss (or a weight) became NaN/inf; the message names epoch and iteration."""


@dataclass
class TrainState:
    """What the loop updates: the network (unwrapped), what is called (DDP/compiled), optimizer and friends."""

    model: nn.Module
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler | None = None
    ema: ModelEma | None = None
    step: int = 0  # optimizer steps done since the start of training
    compile_reported: bool = False  # the first (compiling) step's time was logged


@dataclass
class LoopSettings:
    """Per-step settings read once from the config."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision
    grad_accum_steps: int = 1
    clip_grad_l2norm: float | None = 1.0
    label_smoothing: float = 0.0
    log_period: int = 10
    log_period_s: float = 30.0  # also a log line when this many seconds passed since the last one (slow epochs)
    max_epoch: int = 1
    progress_bar: bool = False  # tqdm when interactive, plain log lines otherwise
    compiled: bool = False  # torch.compile on: the first step's time (compilation) is logged


@dataclass
class EpochResult:
    """Train metrics of one epoch (reduced over ranks) and where it stopped."""

    loss: float
    top1: float
    lr: float
    clips_per_s: float  # over all processes
    clips: int
    batches_done: int  # batches of this epoch done, counted from its start (resume included)
    clips_per_s_per_gpu: float = 0.0  # mean per process
    data_wait_frac: float = 0.0  # share of the epoch's wall time spent waiting for the next batch (mean of ranks)
    preempted_by: int | None = None  # signal number when stopped early
    bad_paths: list[str] = field(default_factory=list)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum(targets * log_softmax(logits)); targets [B, C] (mixup/cutmix)."""
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def train_one_epoch(state: TrainState, loader: Iterable, epoch: int, iters_per_epoch: int, cfg: LoopSettings, *,
                    start_batch: int = 0, mixup: Callable | None = None, preempt: PreemptionHandler | None = None,
                    on_step: Callable[[int, int], None] | None = None, tb_writer: Any = None) -> EpochResult:
    """Train over `loader` (already positioned at `start_batch`); stops early after a step when preempted."""
    state.forward.train()
    accum = max(1, cfg.grad_accum_steps)
    is_ddp = isinstance(state.forward, nn.parallel.DistributedDataParallel)
    log = StepLog(cfg, epoch, iters_per_epoch, start_batch, tb_writer)
    loss_sum, correct, clips, lr = 0.0, 0.0, 0, lr_at(epoch, state.schedule)
    bad_paths: list[str] = []
    i, stop = start_batch - 1, False
    for i, batch in enumerate(loader, start=start_batch):
        step_wait = log.batch_arrived()
        video = batch["video"].to(cfg.device, non_blocking=True)
        labels = batch["label"].to(cfg.device, non_blocking=True)
        bad_paths.extend(batch.get("bad_paths") or [])
        targets = None
        if mixup is not None:
            video, targets = mixup(video, labels)  # soft targets [B, classes]
        if i % accum == 0 or i == start_batch:  # LR set once per optimizer step
            lr = lr_at(epoch + i / iters_per_epoch, state.schedule)
            set_lr(state.optimizer, lr)
        sync = (i + 1) % accum == 0 or i + 1 == iters_per_epoch  # the last batch of an accumulation group
        with state.forward.no_sync() if is_ddp and not sync else contextlib.nullcontext():
            logits, loss = forward_loss(state.forward, video, labels, targets, cfg)
            backward(state, loss, accumulation_group_size(i, accum, iters_per_epoch))
        hard = targets.argmax(dim=-1) if targets is not None else labels
        # The step's one host sync, before the optimizer step is queued: the loss (the checks, the sums, the log) and
        # the correct count together. A second read after the optimizer step would make the host wait for it too
        # instead of queueing the next forward (CUDA).
        loss_value, step_correct = torch.stack([loss.detach().float(),
                                                (logits.detach().argmax(dim=-1) == hard).sum().float()]).tolist()
        stop = _check_step(state, loss_value, preempt, epoch, i, iters_per_epoch, cfg.device)
        grad_norm = optimizer_step(state, cfg.clip_grad_l2norm, want_norm=log.wants_grad_norm) if sync else None

        n = labels.shape[0]
        loss_sum += loss_value * n
        correct += step_correct
        clips += n
        log.step_done(state, i, loss_value, lr, n, clips, grad_norm, step_wait)
        if on_step is not None:
            on_step(epoch, i + 1)
        if stop and sync:
            break
        log.batch_requested()
    log.close()
    elapsed = max(time.perf_counter() - log.start_time, 1e-9)
    loss_sum, correct, clips_all, wait_frac_sum = du.all_reduce_sum(
        [loss_sum, correct, float(clips), log.data_wait / elapsed], cfg.device)
    world = du.get_world_size()
    stopped_early = stop and i + 1 < iters_per_epoch
    return EpochResult(
        loss=loss_sum / max(clips_all, 1.0),
        top1=100.0 * correct / max(clips_all, 1.0),
        lr=lr,
        clips_per_s=clips_all / elapsed,
        clips=int(clips_all),
        clips_per_s_per_gpu=clips_all / world / elapsed,
        data_wait_frac=wait_frac_sum / world,
        batches_done=i + 1,
        preempted_by=(preempt.signum or signal.SIGTERM) if stopped_early and preempt is not None else None,
        bad_paths=bad_paths,
    )


# ------------------------------------------------------------------------------------------- one training step


def forward_loss(forward: nn.Module, video: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None,
                 cfg: LoopSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [B, classes] in float32, the batch's mean loss): the forward under autocast, the loss outside it
    (soft targets after mixup, else cross-entropy with label smoothing)."""
    with torch.autocast(cfg.device.type, dtype=cfg.amp_dtype or torch.float32, enabled=cfg.amp_dtype is not None):
        logits = forward(video)
    logits = logits.float()
    if targets is not None:
        return logits, soft_target_cross_entropy(logits, targets)
    return logits, F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)


def accumulation_group_size(batch: int, accum: int, iters_per_epoch: int) -> int:
    """How many batches the accumulation group of batch `batch` (counted from the epoch's start) sums: accum, or
    fewer for the last group of an epoch whose length is not a multiple of accum (it steps at the epoch's end)."""
    return min(accum, iters_per_epoch - batch // accum * accum)


def backward(state: TrainState, loss: torch.Tensor, group_size: int) -> None:
    """Accumulate the gradient of `loss` / group_size (the group's gradients sum to that of its mean loss), scaled
    by the GradScaler under fp16."""
    scaled = loss / group_size
    (state.scaler.scale(scaled) if state.scaler is not None else scaled).backward()


def optimizer_step(state: TrainState, clip_grad_l2norm: float | None, want_norm: bool = False) -> torch.Tensor | None:
    """The update at the end of an accumulation group, as timm's scaler call: unscale (fp16) -> clip -> step ->
    zero_grad -> EMA. Unscaling comes first so that the clip threshold applies to the true gradient norm. Returns
    the norm before clipping when clipping (or when `want_norm`: TensorBoard), else None."""
    model, optimizer, scaler = state.model, state.optimizer, state.scaler
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = None
    if clip_grad_l2norm:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_l2norm)
    elif want_norm:  # for TensorBoard only; clipping is off
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if scaler is not None:
        scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if state.ema is not None:
        state.ema.update(model)
    state.step += 1
    return grad_norm


def _check_step(state: TrainState, loss: float, preempt: PreemptionHandler | None, epoch: int, i: int,
                iters_per_epoch: int, device: torch.device) -> bool:
    """Raise TrainingDiverged on a non-finite loss (on any rank); return whether a stop signal came (to any rank).
    One all-reduce for both flags keeps ranks in step: every rank stops together."""
    signalled = preempt is not None and preempt.signum is not None
    nonfinite, stop = _any_rank([not math.isfinite(loss), signalled], device)
    if nonfinite:
        state.optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(f"loss is {loss} at epoch {epoch + 1}, iteration {i + 1}/{iters_per_epoch} "
                               f"(optimizer step {state.step}); stopping without saving. Lower solver.base_lr or "
                               f"set solver.clip_grad_l2norm; the last good checkpoint is kept")
    return stop


# ------------------------------------------------------------------------------------------------ step logging


class StepLog:
    """What a person watching an epoch sees, step by step (rank 0): a tqdm bar when interactive, else a log line
    every log_period steps (or log_period_s seconds) with the ETA; per-step TensorBoard curves; the first
    (compiling) step's time. Also measures the time spent waiting for batches."""

    def __init__(self, cfg: LoopSettings, epoch: int, iters_per_epoch: int, start_batch: int,
                 tb_writer: Any = None) -> None:
        self.cfg, self.epoch, self.iters_per_epoch, self.start_batch = cfg, epoch, iters_per_epoch, start_batch
        self.tb_writer = tb_writer if du.is_main() else None
        self.bar = None
        if cfg.progress_bar and du.is_main():
            from tqdm import tqdm

            self.bar = tqdm(total=iters_per_epoch, initial=start_batch, desc=f"epoch {epoch + 1}/{cfg.max_epoch}",
                            dynamic_ncols=True, leave=False)
        self.start_time = time.perf_counter()
        self.data_wait, self.waited_since, self.last_log = 0.0, self.start_time, self.start_time

    @property
    def wants_grad_norm(self) -> bool:
        """TensorBoard plots the gradient norm (computed also when clipping is off)."""
        return self.tb_writer is not None

    def batch_requested(self) -> None:
        """The next batch is asked for: its wait starts now."""
        self.waited_since = time.perf_counter()

    def batch_arrived(self) -> float:
        """Seconds waited for this batch (the step before ended with a host sync: loss.item())."""
        step_wait = time.perf_counter() - self.waited_since
        self.data_wait += step_wait
        return step_wait

    def step_done(self, state: TrainState, i: int, loss: float, lr: float, n: int, clips: int,
                  grad_norm: torch.Tensor | None, step_wait: float) -> None:
        """Report batch `i` (n clips; `clips` so far this epoch): bar or log line, TensorBoard, compile time."""
        cfg, iters = self.cfg, self.iters_per_epoch
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
        elif du.is_main() and ((i + 1) % cfg.log_period == 0 or i + 1 == iters
                               or time.perf_counter() - self.last_log >= cfg.log_period_s):
            self.last_log = time.perf_counter()
            elapsed = max(time.perf_counter() - self.start_time, 1e-9)
            per_iter = elapsed / (i + 1 - self.start_batch)  # training time only: val/test come on top
            left = iters - i - 1
            logger.info("epoch %d/%d iter %d/%d loss %.4f lr %.3e %.1f clips/s (this process) ETA epoch %s, "
                        "training %s", self.epoch + 1, cfg.max_epoch, i + 1, iters, loss, lr, clips / elapsed,
                        format_eta(left * per_iter),
                        format_eta((left + (cfg.max_epoch - self.epoch - 1) * iters) * per_iter))
        if self.tb_writer is not None:
            step_time = max(time.perf_counter() - self.waited_since, 1e-9)
            _tensorboard_step(self.tb_writer, self.epoch * iters + i + 1, loss, lr, grad_norm, n / step_time,
                              step_wait)
        if cfg.compiled and not state.compile_reported:
            state.compile_reported = True
            if du.is_main():
                logger.info("torch.compile: first step took %.1f s (includes compiling forward and backward)",
                            time.perf_counter() - self.start_time)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _tensorboard_step(writer: Any, global_iter: int, loss: float, lr: float, grad_norm: torch.Tensor | None,
                      clips_per_s: float, data_wait_s: float) -> None:
    """Per-iteration curves at the global iteration (epoch * iters_per_epoch + batch): loss, LR, the gradient
    norm before clipping (optimizer steps only: with accumulation, every grad_accum_steps), this process's clips/s
    over the step (data wait included) and the seconds it waited for the batch."""
    writer.add_scalar("train/loss", loss, global_iter)
    writer.add_scalar("train/lr", lr, global_iter)
    if grad_norm is not None:
        writer.add_scalar("train/grad_norm", float(grad_norm), global_iter)
    writer.add_scalar("train/clips_per_s", clips_per_s, global_iter)
    writer.add_scalar("train/data_wait_s", data_wait_s, global_iter)


def _any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Element-wise OR of boolean flags over ranks."""
    if not du.is_dist():
        return flags
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def params_finite(model: nn.Module) -> bool:
    """True when every weight is finite (checked before writing a checkpoint: never save a NaN model)."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def __getattr__(name: str) -> Any:
    """`mvit_video.engine.loop.interactive`, its old home, keeps working for a release (DeprecationWarning)."""
    if name == "interactive":
        return moved("mvit_video.engine.loop.interactive", "mvit_video.utils.progress:interactive")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
