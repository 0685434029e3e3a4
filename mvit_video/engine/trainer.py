"""A training run, read top to bottom: `build_run` sets everything up (data, model, optimizer, resume point),
`fit` trains, validates, checkpoints and tests, and `checkpoint_state` is the dict a checkpoint holds."""

from __future__ import annotations

import logging
import random
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from mvit_video import checkpoint as ck
from mvit_video.data import build_dataset, build_loader
from mvit_video.data.lists import check_label_range
from mvit_video.data.transforms import build_mixup
from mvit_video.engine import compile as comp
from mvit_video.engine import throughput
from mvit_video.engine.ema import ModelEma
from mvit_video.engine.loop import (EpochResult, LoopSettings, TrainState, TrainingDiverged, params_finite,
                                    train_one_epoch)
from mvit_video.engine.memory import check_fits
from mvit_video.engine.optim import Schedule, build_optimizer, lr_at
from mvit_video.engine.preempt import PreemptionHandler
from mvit_video.engine.resume import (ResumePoint, check_resumable, descends_from, origin_of, requeued, restore,
                                     truncate_metrics)
from mvit_video.eval.testing import ValidationStopped, test, validate
from mvit_video.models import build_model
from mvit_video.models.flops import count_gflops
from mvit_video.settings import CheckpointData, RunConfig
from mvit_video.utils import distributed as du
from mvit_video.utils.errors import ConfigError
from mvit_video.utils.io import append_jsonl, atomic_write_text, read_jsonl
from mvit_video.utils.progress import interactive

logger = logging.getLogger("mvit_video.train")


@dataclass
class Run:
    """Everything one training run holds, built once by `build_run`."""

    cfg: RunConfig
    state: TrainState  # model, what is called (compiled/DDP), optimizer, schedule, scaler, EMA, step
    eval_forward: nn.Module  # what scores val/test views: the model, or its compiled version
    train_loader: Any
    val_loader: Any
    iters_per_epoch: int
    class_names: list[str] | None
    settings: LoopSettings  # device, autocast dtype and the other per-step settings
    mixup: Callable | None
    start: ResumePoint
    flops_per_clip: float | None = None  # for the MFU figure (CUDA only)
    peak_flops: float | None = None
    seen_bad: set[str] = field(default_factory=set)

    @property
    def device(self) -> torch.device:
        return self.settings.device

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return self.settings.amp_dtype

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def metrics_path(self) -> Path:
        return self.output_dir / "metrics.jsonl"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_run(cfg: RunConfig, device: torch.device, amp_dtype: torch.dtype | None) -> Run:
    """Datasets and loaders, the model (resumed, or initial weights), optimizer, EMA, compilation, DDP.
    The steps run in this order: each one's random draws (model init, the loaders' seeds) follow the seed."""
    world = du.get_world_size()
    _begin(cfg, device, world)
    data = _build_data(cfg, device, world)
    model = _build_model(cfg, device, world, amp_dtype)
    state = _train_state(cfg, model, device, amp_dtype)
    start = _resume_or_init(cfg, state, Path(cfg.output_dir), world, data.iters_per_epoch, data.class_names)
    compiled, eval_forward = _wrap_for_speed_and_ranks(cfg, state, device, world)
    flops_per_clip, peak = _mfu_inputs(cfg, model, device)
    return Run(cfg=cfg, state=state, eval_forward=eval_forward, train_loader=data.train_loader,
               val_loader=data.val_loader, iters_per_epoch=data.iters_per_epoch, class_names=data.class_names,
               settings=loop_settings(cfg, device, amp_dtype, compiled),
               mixup=build_mixup(cfg.mixup, cfg.model.num_classes) if cfg.mixup.enable else None,
               start=start, flops_per_clip=flops_per_clip, peak_flops=peak)


def _begin(cfg: RunConfig, device: torch.device, world: int) -> None:
    """Seed this process (seed + rank), write <output_dir>/config.yaml (rank 0) and say what runs where."""
    output_dir = Path(cfg.output_dir)
    seed_everything(cfg.seed + du.get_rank())
    if du.is_main():
        atomic_write_text(cfg.yaml, output_dir / "config.yaml")
    logger.info("experiment %s -> %s (%d process%s on %s)", cfg.name, output_dir, world, "es" if world > 1 else "",
                device)


@dataclass
class _Data:
    """The loaders of a run and what the rest of the build reads from the datasets."""

    train_loader: Any
    val_loader: Any
    iters_per_epoch: int
    class_names: list[str] | None


def _build_data(cfg: RunConfig, device: torch.device, world: int) -> _Data:
    """The train/val (and test) datasets, their labels checked against model.num_classes, and the two loaders."""
    rank = du.get_rank()
    train_set, val_set = build_dataset(cfg, "train", device=device), build_dataset(cfg, "val")
    # Label problems fail here, not after an epoch (val) or at the end (the test, a checkpoint's class names).
    test_sets = {cfg.test.split: build_dataset(cfg, cfg.test.split)} if cfg.test.enable else {}
    check_labels(cfg.model.num_classes, {"train": train_set, "val": val_set, **test_sets})
    loader = cfg.data_loader
    train_loader = build_loader(train_set, "train", loader, batch_size=cfg.train.batch_size, seed=cfg.seed,
                                world_size=world, rank=rank, device=device)  # batches arrive on the device
    val_loader = build_loader(val_set, "val", loader, batch_size=cfg.test.batch_size, seed=cfg.seed,
                              world_size=world, rank=rank)
    iters_per_epoch = len(train_loader)
    if iters_per_epoch == 0:
        raise ConfigError(f"config key 'train.batch_size': {cfg.train.batch_size} is larger than the training set "
                          f"({len(train_set)} videos)")
    return _Data(train_loader, val_loader, iters_per_epoch, getattr(train_set, "class_names", None))


def _build_model(cfg: RunConfig, device: torch.device, world: int, amp_dtype: torch.dtype | None) -> nn.Module:
    """The network with its initial weights, on the device, once a training step is known to fit there."""
    model = build_model(cfg.model)
    # Before anything big is allocated: a configuration that cannot fit is refused in one line (engine/memory.py).
    need = check_fits(cfg, device, world, amp_dtype is not None, sum(p.numel() for p in model.parameters()))
    if need is not None:
        logger.info("memory: a training step needs at least %.2f GiB per process (activations %.2f GiB)",
                    sum(need.values()) / 2**30, need["activations"] / 2**30)
    model = model.to(device)
    logger.info("model: MViTv2 depth %d dim %d, %.2f M parameters, %d classes", cfg.model.depth,
                cfg.model.embed_dim, sum(p.numel() for p in model.parameters()) / 1e6, cfg.model.num_classes)
    return model


def _train_state(cfg: RunConfig, model: nn.Module, device: torch.device, amp_dtype: torch.dtype | None) -> TrainState:
    """The LR schedule (scaled by num_shards), optimizer, GradScaler (fp16 only) and EMA around `model`."""
    schedule = Schedule.from_config(cfg.solver, cfg.num_shards)
    if schedule.base_lr != cfg.solver.base_lr:
        logger.info("LR scaled by num_shards=%d: base_lr %.3g", cfg.num_shards, schedule.base_lr)
    return TrainState(model=model, forward=model, optimizer=build_optimizer(model, cfg.solver, lr_at(0.0, schedule)),
                      schedule=schedule,
                      scaler=torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None,
                      ema=ModelEma(model, cfg.train.ema.decay) if cfg.train.ema.enable else None)


def _wrap_for_speed_and_ranks(cfg: RunConfig, state: TrainState, device: torch.device,
                              world: int) -> tuple[bool, nn.Module]:
    """torch.compile (train.compile) and DDP (several processes) around the model: sets state.forward, the module
    train steps call; returns (compiled, the module val/test call)."""
    model = state.model
    compiled = compile_enabled(cfg.train.compile, device)
    eval_forward: nn.Module = model
    if compiled:
        # Compiled once, wrapped by DDP (which then all-reduces after the compiled backward). Train steps have one
        # shape (drop_last); val/test chunks are padded to one shape (mean_view_outputs): no recompilation.
        # Regional (train.compile_mode): one graph per distinct block shape, shared by train and eval.
        comp.load_cache_artifacts(Path(cfg.output_dir), device)  # a resumed/requeued run: reuse what was compiled
        eval_forward = state.forward = comp.compile_model(model, cfg.train.compile_mode)
        logger.info("torch.compile on (train.compile=%s, %s): compilation happens in the first train step and the "
                    "first val/test batch", cfg.train.compile, cfg.train.compile_mode)
    if world > 1:
        state.forward = nn.parallel.DistributedDataParallel(
            state.forward, device_ids=[device.index] if device.type == "cuda" else None)
    return compiled, eval_forward


def loop_settings(cfg: RunConfig, device: torch.device, amp_dtype: torch.dtype | None,
                  compiled: bool) -> LoopSettings:
    """The per-step settings of the training loop, read from the config."""
    label_smoothing = cfg.mixup.label_smooth_value if cfg.loss_func == "soft_cross_entropy" else 0.0
    return LoopSettings(device=device, amp_dtype=amp_dtype, grad_accum_steps=cfg.train.grad_accum_steps,
                        clip_grad_l2norm=cfg.solver.clip_grad_l2norm, label_smoothing=label_smoothing,
                        log_period=cfg.log_period, log_period_s=cfg.log_period_s, max_epoch=cfg.solver.max_epoch,
                        progress_bar=interactive(), compiled=compiled)


def _resume_or_init(cfg: RunConfig, state: TrainState, output_dir: Path, world: int,
                    iters_per_epoch: int, class_names: list[str] | None = None) -> ResumePoint:
    """Resume (train.resume_from, else the latest intact checkpoint with auto_resume) beats initial weights
    (train.checkpoint_file_path), as in PySlowFast. Returns where training continues."""
    if du.is_main():
        for orphan in ck.remove_orphan_tmp(output_dir):  # we hold the run lock: no live writer owns these
            logger.info("removed %s (left by a killed write)", orphan)
    path, saved = None, None
    if cfg.train.resume_from:
        # Once this run has gone on from train.resume_from (set_aside_for_resume_from), the same command continues
        # from its latest checkpoint: a rerun or a requeue must not start over from the named one.
        latest, probe = ck.load_latest(output_dir, mmap=True)  # mmap: its small entries only
        path = latest if descends_from(probe, cfg.train.resume_from) else Path(cfg.train.resume_from)
        saved = ck.load(path)
    elif cfg.train.auto_resume or requeued():  # a requeued job continues its own run (resume.fresh_start)
        path, saved = ck.load_latest(output_dir)
    if saved is not None:
        check_resumable(saved, cfg, state.model, path)
        start = restore(state, saved, world, iters_per_epoch, cfg.train.batch_size)
        start.path = str(path)
        start.origin = origin_of(cfg.train.resume_from) if cfg.train.resume_from else saved.get("origin")
        logger.info("Resuming from %s (epoch %d, iteration %d)", path, start.epoch,
                    start.epoch * iters_per_epoch + start.batch)
        return start
    if cfg.train.checkpoint_file_path:
        ck.load_pretrained(state.model, cfg.train.checkpoint_file_path)
        ck.match_pretrained_classes(state.model, cfg.train.checkpoint_file_path, class_names, cfg.train.reinit_head)
        if state.ema is not None:
            state.ema.load_state_dict(state.model.state_dict())
    return ResumePoint()


def checkpoint_state(run: Run, epochs_done: int, batches_done: int, rngs: list[dict],
                     partial: dict[str, float] | None = None) -> dict[str, Any]:
    """The checkpoint after `epochs_done` epochs and `batches_done` global batches of the next one."""
    state, cfg = run.state, run.cfg
    return {
        **ck.make_checkpoint(state.model, cfg.model, CheckpointData.from_run(cfg).to_dict(), run.class_names),
        "epoch": epochs_done,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": {"step": state.step},  # optimizer steps: the LR is a function of them
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "ema": state.ema.state_dict() if state.ema is not None else None,
        "rng": rngs,  # one per process
        "origin": run.start.origin,  # the train.resume_from this history started from (engine.resume.origin_of)
        # The position, once: global batches (train.batch_size is global), valid for any world size; partial:
        # the interrupted epoch's loss/accuracy sums so far, so that its metrics line covers all of it
        "sampler": {"batches_done": batches_done, "world_size": du.get_world_size(),
                    "batch_size": cfg.train.batch_size, "partial": partial},
        "cfg": cfg.yaml,
    }


def save(run: Run, epochs_done: int, batches_done: int, path: Path, partial: dict[str, float] | None = None) -> None:
    """Write a checkpoint (collective over ranks: every rank's RNG state goes in; rank 0 writes)."""
    if not params_finite(run.state.model):
        raise TrainingDiverged(f"weights became NaN/inf by epoch {epochs_done + 1}, iteration {batches_done}; "
                               f"not saving. Lower solver.base_lr; the last good checkpoint is kept")
    rngs = du.all_gather_object(ck.get_rng_state())
    if du.is_main():
        ck.save(checkpoint_state(run, epochs_done, batches_done, rngs, partial), path)
        if run.settings.compiled:  # what was compiled so far, for the resumed/requeued process (engine/compile.py)
            from mvit_video.engine.compile import save_cache_artifacts

            save_cache_artifacts(run.output_dir, run.device)
    du.barrier()


def fit(run: Run, on_step: Callable[[int, int], None] | None = None, *,
        preempt: PreemptionHandler | None = None) -> dict[str, Any]:
    """Train from run.start to solver.max_epoch (validating and checkpointing on their periods), then test.
    A preemption signal saves and exits. Returns the last train/val/test records. `preempt`: an installed handler
    (train() installs one before build_run); by default fit installs its own for the training."""
    cfg, start, out = run.cfg, run.start, run.output_dir
    max_epoch = cfg.solver.max_epoch
    writer = None
    if du.is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
        truncate_metrics(run.metrics_path, start.epoch)
    owned = preempt is None
    if preempt is None:
        preempt = PreemptionHandler(cfg.train.stop_grace_s).install()
    last: dict[str, Any] = {}
    finished_before = start.epoch >= max_epoch
    if finished_before:
        logger.info("training already finished (%d epochs); nothing to train", start.epoch)
    preempt.checkpointable = True  # from here a stop signal saves the position before the run ends
    try:
        if start.rng is not None:
            # The loaders draw their worker seeds from their own generators and the items seed their own
            # augmentation, so the saved state continues the global stream (dropout, drop path, mixup) exactly.
            ck.set_rng_state(start.rng)
        for epoch in range(start.epoch, max_epoch):
            start_batch = start.batch if epoch == start.epoch else 0
            _position_sampler(run, epoch, start_batch)
            result = train_one_epoch(run.state, iter(run.train_loader), epoch, run.iters_per_epoch, run.settings,
                                     start_batch=start_batch, mixup=run.mixup, preempt=preempt, on_step=on_step,
                                     tb_writer=writer)
            report_bad_videos(result.bad_paths, run.seen_bad, out, epoch)
            partial = start.partial if epoch == start.epoch and start_batch > 0 else None
            if partial is not None and start_batch == run.iters_per_epoch:  # stopped in this epoch's validation
                result = replace(result, **{k: partial[k] for k in _REPORTED if k in partial})
            sums = _epoch_sums(result, partial)
            if result.preempted_by is not None:
                path = ck.preempt_checkpoint_path(out)
                logger.info("signal %d: saving %s at epoch %d, iteration %d/%d", result.preempted_by, path,
                            epoch + 1, result.batches_done, run.iters_per_epoch)
                save(run, epoch, result.batches_done, path, sums)
                preempt.exit()
            epochs_done, is_last = epoch + 1, epoch + 1 == max_epoch
            last["train"] = _train_record(run, result, sums, epochs_done, writer)
            val, saved_to = None, None
            if epochs_done % cfg.train.eval_period == 0 or is_last:
                try:
                    val = last["val"] = _validate(run, epochs_done, writer, stop=lambda: preempt.signum is not None)
                except ValidationStopped:
                    # A long validation (K400: minutes) would outlast the grace period and lose the epoch: save
                    # its end instead, with what its train line reported; the rerun validates it.
                    path = ck.preempt_checkpoint_path(out)
                    logger.info("signal %d: saving %s at epoch %d, iteration %d/%d (stopped its validation; the "
                                "rerun validates it)", preempt.signum or signal.SIGTERM, path, epochs_done,
                                run.iters_per_epoch, run.iters_per_epoch)
                    save(run, epoch, run.iters_per_epoch, path,
                         {**sums, **{k: getattr(result, k) for k in _REPORTED}})
                    preempt.exit()
            if epochs_done % cfg.train.checkpoint_period == 0 or is_last:
                saved_to = ck.epoch_checkpoint_path(out, epochs_done)
                save(run, epochs_done, 0, saved_to)
                if du.is_main():
                    ck.preempt_checkpoint_path(out).unlink(missing_ok=True)  # superseded
                    ck.prune_checkpoints(out, cfg.train.keep_checkpoints, saved_to, cfg.train.resume_from or None)
            if epochs_done % cfg.train.eval_period == 0 or is_last:
                _save_best(run, epochs_done, val, saved_to)
            if du.broadcast_flag(preempt.signum is not None, run.device) and not is_last:
                logger.info("signal %s: saving %s after epoch %d", preempt.signum or signal.SIGTERM,
                            ck.preempt_checkpoint_path(out), epochs_done)
                save(run, epochs_done, 0, ck.preempt_checkpoint_path(out))
                preempt.exit()
        if du.broadcast_flag(preempt.signum is not None, run.device):
            logger.info("signal %s during the last epoch: training is saved, the test is left for the rerun",
                        preempt.signum or signal.SIGTERM)
            preempt.exit()
    finally:
        preempt.checkpointable = False  # the final test: a stop signal ends the run at once (nothing to save)
        if owned:
            preempt.restore()
        if writer is not None:
            writer.close()
    if cfg.test.enable:
        last.update(_final_test(run, finished_before))
    return last


def _position_sampler(run: Run, epoch: int, start_batch: int) -> None:
    """Point the train sampler at `epoch`, skipping the `start_batch` global batches a resumed run has done."""
    sampler = getattr(run.train_loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
        sampler.set_start_index(start_batch * (run.cfg.train.batch_size // du.get_world_size()))


# What an epoch's train line reports beyond its sums: saved with a stop during its validation, for the rerun's line.
_REPORTED = ("lr", "clips_per_s", "clips_per_s_per_gpu", "data_wait_frac")


def _epoch_sums(result: EpochResult, partial: dict[str, float] | None) -> dict[str, float]:
    """Loss/correct/clip totals of the epoch so far: this run's part plus the part before a mid-epoch resume."""
    sums = {"loss_sum": result.loss * result.clips, "correct": result.top1 * result.clips / 100.0,
            "clips": float(result.clips)}
    for key in sums:
        sums[key] += float((partial or {}).get(key, 0.0))
    return sums


def _train_record(run: Run, result: EpochResult, sums: dict[str, float], epochs_done: int,
                  writer: Any) -> dict[str, Any]:
    """The epoch's train line of metrics.jsonl (written and logged by rank 0) and TensorBoard scalars."""
    clips = max(sums["clips"], 1.0)
    mfu = throughput.mfu(result.clips_per_s_per_gpu, run.flops_per_clip, run.peak_flops)
    record = {"split": "train", "epoch": epochs_done, "loss": sums["loss_sum"] / clips,
              "top1": 100.0 * sums["correct"] / clips, "lr": result.lr, "clips_per_s": result.clips_per_s,
              "clips_per_s_per_gpu": result.clips_per_s_per_gpu, "data_wait_frac": result.data_wait_frac, "mfu": mfu}
    if sums["clips"] == 0:  # e.g. an old checkpoint saved at the very end of the epoch: nothing to report
        logger.warning("epoch %d: no batch left to train after the resume; no train line written", epochs_done)
    elif du.is_main():
        append_jsonl(record, run.metrics_path)
        logger.info("epoch %d/%d: train loss %.4f top1 %.2f%% lr %.3e | %.1f clips/s (%.1f per %s), "
                    "%.0f%% of step time waiting for data%s", epochs_done, run.cfg.solver.max_epoch, record["loss"],
                    record["top1"], result.lr, result.clips_per_s, result.clips_per_s_per_gpu,
                    "GPU" if run.device.type == "cuda" else "process", 100 * result.data_wait_frac,
                    f", MFU {100 * mfu:.1f}%" if mfu is not None else "")
        writer.add_scalar("epoch/train_loss", record["loss"], epochs_done)
        writer.add_scalar("epoch/train_top1", record["top1"], epochs_done)
    return record


def _validate(run: Run, epoch: int, writer: Any, stop: Callable[[], bool] | None = None) -> dict[str, Any] | None:
    """Multi-view val of the weights (through the compiled model when compiled) and of the EMA weights, with the
    test's settings (mvit_video.eval.testing.validate); rank 0 logs and writes the metrics lines. ValidationStopped
    when `stop` said so (the resumed run truncates a line already written)."""
    out = None
    nets = [("val", run.eval_forward)] + ([("val_ema", run.state.ema.module)] if run.state.ema is not None else [])
    for split, net in nets:
        started = time.perf_counter()  # logged: a compiled run's first validation includes compiling eval graphs
        summary = validate(net, run.val_loader, run.device, run.amp_dtype, run.cfg.test.max_views_per_forward,
                           stop=stop)
        took = time.perf_counter() - started
        if summary is None:
            continue
        record = {"split": split, "epoch": epoch, "top1": summary["top1"], "top5": summary["top5"]}
        append_jsonl(record, run.metrics_path)
        out = out or record
        if summary["top1"] is None:  # nothing decoded: no accuracy to log
            logger.info("epoch %d: %s top1 n/a (%d videos, %d failed) in %.1f s", epoch, split, summary["videos"],
                        summary["failed"], took)
            continue
        logger.info("epoch %d: %s top1 %.2f%% top5 %.2f%% (%d videos, %d failed) in %.1f s", epoch, split,
                    summary["top1"], summary["top5"], summary["videos"], summary["failed"], took)
        writer.add_scalar(f"epoch/{split}_top1", summary["top1"], epoch)
        writer.add_scalar(f"epoch/{split}_top5", summary["top5"], epoch)
    return out


def _save_best(run: Run, epoch: int, val: dict[str, Any] | None, saved_to: Path | None) -> None:
    """train.save_best: when this epoch's val top-1 beats the best so far (ck.is_new_best), its weights become
    checkpoints/checkpoint_best.pyth: a hard link to the epoch checkpoint just written, else a checkpoint of its
    own (collective, as `save`)."""
    if not run.cfg.train.save_best:
        return
    new_best = du.is_main() and val is not None and ck.is_new_best(run.output_dir, read_jsonl(run.metrics_path),
                                                                  epoch, val.get("top1"))
    if not du.broadcast_flag(new_best, run.device):
        return
    best = ck.best_checkpoint_path(run.output_dir)
    if saved_to is None:
        save(run, epoch, 0, best)
    elif du.is_main():
        ck.link_or_copy(saved_to, best)
    if du.is_main():
        logger.info("epoch %d: new best val top1 %.2f%% -> %s", epoch, val["top1"], best)


def _final_test(run: Run, finished_before: bool) -> dict[str, Any]:
    """The multi-view test at the end of training; skipped when re-running a finished command that tested. Its
    metrics.jsonl line names the checkpoint holding the tested weights and its epoch."""
    tested = du.is_main() and any(m.get("split") == "test" for m in read_jsonl(run.metrics_path))
    if finished_before and du.all_gather_object(tested)[0]:
        logger.info("the test already ran (see %s); test again with python -m mvit_video.evaluate",
                    run.metrics_path)
        return {}
    if finished_before:  # nothing trained: the weights are those of the checkpoint resumed from
        epoch, path = run.start.epoch, run.start.path
    else:
        epoch, path = run.cfg.solver.max_epoch, str(ck.epoch_checkpoint_path(run.output_dir, run.cfg.solver.max_epoch))
    return {"test": test(run.cfg, run.state.model, run.class_names, forward=run.eval_forward, epoch=epoch,
                         checkpoint=path)}


def report_bad_videos(paths: list[str], seen: set[str], output_dir: Path, epoch: int) -> None:
    """Gather the videos that failed to decode on any rank; rank 0 logs new ones once and appends them to a file."""
    gathered = du.all_gather_object(paths)
    if not du.is_main():
        return
    every = [p for ps in gathered for p in ps]
    listed = output_dir / "bad_videos.txt"
    if every and listed.is_file():  # a resumed run: the paths listed before are known, not new
        seen.update(line for line in listed.read_text(encoding="utf-8").splitlines() if line)
    new = sorted(set(every) - seen)
    for p in new:
        logger.warning("cannot decode %s (skipped, replaced by another video)", p)
    if new:
        seen.update(new)
        with open(output_dir / "bad_videos.txt", "a", encoding="utf-8") as f:
            f.write("".join(f"{p}\n" for p in new))
    if every:
        logger.warning("epoch %d: %d decode failures (%d new videos, %d known in total; see %s)", epoch + 1,
                       len(every), len(new), len(seen), output_dir / "bad_videos.txt")


def check_labels(num_classes: int, datasets: dict[str, Any]) -> None:
    """model.num_classes must match the class list and cover every label of the lists used (ConfigError)."""
    for split, ds in datasets.items():
        names = getattr(ds, "class_names", None)
        if names and len(names) != num_classes:
            raise ConfigError(f"config key 'model.num_classes' is {num_classes} but the dataset's class list "
                              f"(classes.txt / labels.json in data.path_to_data_dir) has {len(names)} classes")
        check_label_range(getattr(ds, "labels", None) or [], num_classes, listed=f"the {split} list",
                          classes=f"model.num_classes is {num_classes}", paths=getattr(ds, "paths", None))


def compile_enabled(setting: bool | str, device: torch.device) -> bool:
    """train.compile: true | false | auto (on for CUDA; off on CPU, where compiling measured no faster)."""
    return setting is True or (setting == "auto" and device.type == "cuda")


def _mfu_inputs(cfg: RunConfig, model: nn.Module, device: torch.device) -> tuple[float | None, float | None]:
    """(model FLOPs per training clip, peak FLOP/s) for the MFU figure; (None, None) off CUDA or when unknown."""
    peak = throughput.peak_flops(device, cfg.train.peak_tflops)
    if peak is None or not du.is_main():
        return None, None
    crop = cfg.data.train_crop_size
    gflops = count_gflops(model, (1, 3, cfg.data.num_frames, crop, crop))
    logger.info("MFU basis: %.1f GFLOPs per clip forward (fvcore), peak %.0f TFLOP/s", gflops, peak / 1e12)
    return throughput.train_flops_per_clip(gflops, cfg.model.act_checkpoint), peak
