"""Train MViTv2: `python -m mvit_video.train [+experiment=NAME] [key=value ...]`.

Everything a run writes goes to `output_dir` (default `outputs/<name>`): train.log, metrics.jsonl,
tensorboard/, checkpoints/, bad_videos.txt, config.yaml. Re-running the same command resumes from the latest
checkpoint. SIGTERM/SIGUSR1 (SLURM preemption) save `checkpoints/checkpoint_preempt.pyth` after the current step
and exit: status 0 after `scontrol requeue` succeeded (under SLURM), else 128 + signal (143 SIGTERM, 138 SIGUSR1);
under the submitit launcher the signal is handed to submitit, which requeues the job. SIGINT (Ctrl-C) saves the same
way and exits 130; a second Ctrl-C stops at once. A run holds `<output_dir>/.run.lock`: a second run there refuses.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import random
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig, open_dict

from mvit_video.config import compose, precheck_flag_run, shorten_schedule, to_yaml, validate
from mvit_video.data.loader import available_cores
from mvit_video.engine import checkpoint as ck
from mvit_video.engine import distributed as du
from mvit_video.engine import throughput
from mvit_video.engine.ema import ModelEma
from mvit_video.engine.runlock import RunLock
from mvit_video.engine.loop import (LoopSettings, PreemptionHandler, TrainState, TrainingDiverged, interactive,
                                    params_finite, train_one_epoch, validate_epoch)
from mvit_video.engine.optim import Schedule, build_optimizer, lr_at
from mvit_video.eval.multiview import resolve_amp_dtype
from mvit_video.utils.errors import ConfigError, UserError, cli_errors, one_line
from mvit_video.utils.io import append_jsonl, atomic_write_text, read_jsonl
from mvit_video.utils.progress import TqdmLoggingHandler

logger = logging.getLogger("mvit_video.train")



def setup_logging(output_dir: Path | None, rank: int) -> None:
    """Rank 0 logs INFO to stderr and <output_dir>/train.log; other ranks only errors."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_mvit_video", False)]:
        root.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s %(levelname)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [TqdmLoggingHandler(sys.stderr)]  # records go above the progress bars
    if rank == 0 and output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "train.log", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        h._mvit_video = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.INFO if rank == 0 else logging.ERROR)


def resolve_device(name: str, local_rank: int) -> torch.device:
    """auto -> CUDA when available, else CPU; `cuda` without a GPU is a ConfigError."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("config key 'device': cuda requested but no GPU is available (use device=cpu)")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _sampler(loader: Any) -> Any:
    """The ResumableDistributedSampler behind a train loader (or None)."""
    for s in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if s is not None and hasattr(s, "set_epoch"):
            return s
    return None


def _ignore_preemption_signals(inner: Callable[[int], None] | None, worker_id: int) -> None:
    """DataLoader worker init: SLURM signals every process of a step, Ctrl-C the whole foreground group; workers
    must not die of SIGTERM/SIGUSR1/SIGINT (the main process finishes the step, saves, and ends them on its way
    out: data.loader.stop_workers). Then the loader's own init runs."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if inner is not None:
        inner(worker_id)


def _shield_workers(loader: Any) -> Any:
    """Make `loader`'s workers survive preemption signals (see _ignore_preemption_signals)."""
    if getattr(loader, "num_workers", 0) > 0:
        loader.worker_init_fn = functools.partial(_ignore_preemption_signals, loader.worker_init_fn)
    return loader


def train(cfg: DictConfig, *, on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run training (and the final test when test.enable); returns the last train/val metrics."""
    rank, world, local_rank, nodes = du.env_ranks()
    with open_dict(cfg):
        if world > 1:
            cfg.num_shards = nodes  # PySlowFast NUM_SHARDS = number of nodes: the LR is scaled by it
    schedule_note = shorten_schedule(cfg)  # logged once the log is set up
    validate(cfg, world_size=world, check_paths=True)  # before anything is written or started
    device = resolve_device(str(cfg.device), local_rank)
    if device.type == "cpu":
        # Leave a core per data-loader worker: oversubscribed OpenMP threads spin and run several times slower.
        torch.set_num_threads(max(1, available_cores() // max(1, world) - int(cfg.data_loader.num_workers)))
    du.init_distributed(device.type)
    output_dir = Path(str(cfg.output_dir))
    lock = None
    try:
        setup_logging(None, rank)
        lock = _lock_output_dir(output_dir)  # before anything is written there
        setup_logging(output_dir, rank)
        if schedule_note:
            logger.info(schedule_note)
        return _train(cfg, device, output_dir, on_step)
    finally:
        # Every exit path, error or signal, ends the data-loader workers now (see stop_workers)
        from mvit_video.data.loader import stop_workers

        stop_workers()
        if lock is not None:
            lock.release()
        du.cleanup()


def _lock_output_dir(output_dir: Path) -> RunLock | None:
    """Rank 0 checks output_dir is a writable directory and takes its run lock; every rank fails if it could not."""
    lock, error = None, None
    if du.is_main():
        try:
            if output_dir.exists() and not output_dir.is_dir():
                raise ConfigError(f"config key 'output_dir': {output_dir} is a file, not a directory")
            try:
                output_dir.mkdir(parents=True, exist_ok=True)
                lock = RunLock(output_dir).acquire()
            except (FileExistsError, NotADirectoryError):
                raise ConfigError(f"config key 'output_dir': {output_dir} is below a file, not a directory") from None
            except PermissionError:
                raise ConfigError(f"config key 'output_dir': {output_dir} is not writable") from None
            except OSError as e:
                raise ConfigError(f"config key 'output_dir': cannot write to {output_dir} ({e.strerror})") from None
        except UserError as e:
            error = e
    first = du.all_gather_object(str(error) if error is not None else None)[0]
    if error is not None:
        raise error
    if first is not None:
        raise UserError(first)
    return lock


def _train(cfg: DictConfig, device: torch.device, output_dir: Path,
           on_step: Callable[[int, int], None] | None) -> dict[str, Any]:
    from mvit_video.data import build_dataset, build_loader
    from mvit_video.data.transforms import build_mixup
    from mvit_video.models import MViTConfig, build_model, data_config_from_cfg, make_checkpoint

    rank, world = du.get_rank(), du.get_world_size()
    seed_everything(int(cfg.seed) + rank)
    if du.is_main():
        atomic_write_text(to_yaml(cfg), output_dir / "config.yaml")
    logger.info("experiment %s -> %s (%d process%s on %s)", cfg.name, output_dir, world, "es" if world > 1 else "",
                device)

    train_set = build_dataset(cfg, "train")
    val_set = build_dataset(cfg, "val")
    num_classes = int(cfg.model.num_classes)
    # Label problems fail here, not after an epoch (val) or at the end (the test, a checkpoint's class names).
    _check_labels(num_classes, {"train": train_set, "val": val_set,
                                **({str(cfg.test.split): build_dataset(cfg, str(cfg.test.split))}
                                   if cfg.test.enable else {})})
    class_names = getattr(train_set, "class_names", None)
    train_loader = _shield_workers(build_loader(cfg, "train", train_set, world_size=world, rank=rank))
    val_loader = _shield_workers(build_loader(cfg, "val", val_set, world_size=world, rank=rank))
    sampler = _sampler(train_loader)
    per_process_batch = int(cfg.train.batch_size) // world
    if sampler is not None:
        sampler.set_epoch(0)
        sampler.set_start_index(0)
    iters_per_epoch = len(train_loader)
    if iters_per_epoch == 0:
        raise ConfigError(f"config key 'train.batch_size': {cfg.train.batch_size} is larger than the training set "
                          f"({len(train_set)} videos)")

    model_config = MViTConfig.from_cfg(cfg)
    model = build_model(model_config).to(device)
    data_config = data_config_from_cfg(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model: MViTv2 depth %s dim %s, %.2f M parameters, %d classes", model_config.depth,
                model_config.embed_dim, n_params / 1e6, num_classes)

    schedule = Schedule.from_cfg(cfg.solver, int(cfg.num_shards))
    if schedule.base_lr != float(cfg.solver.base_lr):
        logger.info("LR scaled by num_shards=%d: base_lr %.3g", int(cfg.num_shards), schedule.base_lr)
    optimizer = build_optimizer(model, cfg.solver, lr_at(0.0, schedule))
    use_amp = cfg.train.mixed_precision is True or (cfg.train.mixed_precision == "auto" and device.type == "cuda")
    amp_dtype = resolve_amp_dtype(str(cfg.train.amp_dtype)) if use_amp else None
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    ema = ModelEma(model, float(cfg.train.ema.decay)) if cfg.train.ema.enable else None
    state = TrainState(model=model, forward=model, optimizer=optimizer, schedule=schedule, scaler=scaler, ema=ema)

    # Resume (train.resume_from, else auto_resume) beats initial weights (checkpoint_file_path), as in PySlowFast.
    if du.is_main():
        for orphan in ck.remove_orphan_tmp(output_dir):  # we hold the lock: no live writer owns these
            logger.info("removed %s (left by a killed write)", orphan)
    latest, saved = None, None
    if str(cfg.train.get("resume_from") or ""):
        latest = Path(str(cfg.train.resume_from))
        saved = ck.load(latest)
    elif cfg.train.auto_resume:
        latest, saved = ck.load_latest(output_dir)
    start = ResumePoint()
    if saved is not None:
        _check_resumable(saved, cfg, model, model_config, latest)
        start = _restore(state, saved, world, iters_per_epoch, int(cfg.train.batch_size))
        logger.info("Resuming from %s (epoch %d, iteration %d)", latest, start.epoch, start.iteration)
    elif str(cfg.train.checkpoint_file_path):
        ck.load_pretrained(model, str(cfg.train.checkpoint_file_path))
        if ema is not None:
            ema.load_state_dict(model.state_dict())

    compiled = _compile_enabled(cfg.train.compile, device)
    eval_forward: torch.nn.Module = model
    if compiled:
        # Compiled once, wrapped by DDP (which then all-reduces after the compiled backward). Train steps have one
        # shape (drop_last); val/test chunks are padded to one shape (mean_view_probs): no recompilation per batch.
        eval_forward = state.forward = torch.compile(model)
        logger.info("torch.compile on (train.compile=%s): compilation happens in the first train step and the "
                    "first val/test batch", cfg.train.compile)
    if world > 1:
        state.forward = torch.nn.parallel.DistributedDataParallel(
            state.forward, device_ids=[device.index] if device.type == "cuda" else None)
    mixup = build_mixup(cfg, num_classes) if cfg.mixup.enable else None
    label_smoothing = float(cfg.mixup.label_smooth_value) if cfg.model.loss_func == "soft_cross_entropy" else 0.0
    settings = LoopSettings(device=device, amp_dtype=amp_dtype, grad_accum_steps=int(cfg.train.grad_accum_steps),
                            clip_grad_l2norm=cfg.solver.clip_grad_l2norm, label_smoothing=label_smoothing,
                            log_period=int(cfg.log_period), max_epoch=int(cfg.solver.max_epoch),
                            progress_bar=interactive(), compiled=compiled)
    flops_per_clip, peak = _mfu_inputs(cfg, model, device)
    writer = None
    if du.is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(output_dir / "tensorboard"))
    metrics_path = output_dir / "metrics.jsonl"
    if du.is_main():
        # Lines of epochs the checkpoint does not cover are redone below: drop them, so each epoch appears once.
        _truncate_metrics(metrics_path, start.epoch)
    seen_bad: set[str] = set()

    def save(epochs_done: int, batches_done: int, path: Path, partial: dict[str, float] | None = None) -> None:
        """Checkpoint after `epochs_done` epochs + `batches_done` batches of the next (collective over ranks)."""
        if not params_finite(model):
            raise TrainingDiverged(f"weights became NaN/inf by epoch {epochs_done + 1}, iteration {batches_done}; "
                                   f"not saving. Lower solver.base_lr; the last good checkpoint is kept")
        rngs = du.all_gather_object(ck.get_rng_state())
        if du.is_main():
            data = make_checkpoint(model, model_config, data_config, class_names)
            data.update({
                "epoch": epochs_done,
                "iteration": epochs_done * iters_per_epoch + batches_done,
                "optimizer": optimizer.state_dict(),
                "scheduler": {"policy": "cosine", "step": state.step, "iters_per_epoch": iters_per_epoch},
                "scaler": scaler.state_dict() if scaler is not None else None,
                "ema": ema.state_dict() if ema is not None else None,
                "rng": rngs,
                # batches_done counts global batches (train.batch_size is global): valid for any world size;
                # partial: the interrupted epoch's loss/accuracy sums so far, so its metrics line covers all of it
                "sampler": {"epoch": epochs_done, "batches_done": batches_done,
                            "start_index": batches_done * per_process_batch, "world_size": world,
                            "batch_size": int(cfg.train.batch_size), "partial": partial},
                "cfg": to_yaml(cfg),
            })
            ck.save(data, path)
        du.barrier()

    preempt = PreemptionHandler().install()
    last: dict[str, Any] = {}
    try:
        finished_before = start.epoch >= int(cfg.solver.max_epoch)
        if finished_before:
            logger.info("training already finished (%d epochs); nothing to train", start.epoch)
        if start.rng is not None:
            # The loaders draw their worker seeds from their own generators and the items seed their own
            # augmentation, so the saved state continues the global stream (dropout, drop path, mixup) exactly.
            ck.set_rng_state(start.rng)
        for epoch in range(start.epoch, int(cfg.solver.max_epoch)):
            first = epoch == start.epoch
            start_batch = start.batch if first else 0
            if sampler is not None:
                sampler.set_epoch(epoch)
                sampler.set_start_index(start_batch * per_process_batch)
            result = train_one_epoch(state, iter(train_loader), epoch, iters_per_epoch, settings,
                                     start_batch=start_batch, mixup=mixup, preempt=preempt, on_step=on_step,
                                     tb_writer=writer)
            _report_bad_videos(result.bad_paths, seen_bad, output_dir, epoch)
            sums = _epoch_sums(result, start.partial if first and start_batch > 0 else None)
            if result.preempted_by is not None:
                path = ck.preempt_checkpoint_path(output_dir)
                logger.info("signal %d: saving %s at epoch %d, iteration %d/%d", result.preempted_by, path,
                            epoch + 1, result.batches_done, iters_per_epoch)
                save(epoch, result.batches_done, path, sums)
                preempt.exit()
            epochs_done = epoch + 1
            clips = max(sums["clips"], 1.0)
            mfu = throughput.mfu(result.clips_per_s_per_gpu, flops_per_clip, peak)
            last["train"] = {"split": "train", "epoch": epochs_done, "loss": sums["loss_sum"] / clips,
                             "top1": 100.0 * sums["correct"] / clips, "lr": result.lr,
                             "clips_per_s": result.clips_per_s,
                             "clips_per_s_per_gpu": result.clips_per_s_per_gpu,
                             "data_wait_frac": result.data_wait_frac, "mfu": mfu}
            if sums["clips"] == 0:  # e.g. an old checkpoint saved at the very end of the epoch: nothing to report
                logger.warning("epoch %d: no batch left to train after the resume; no train line written",
                               epochs_done)
            elif du.is_main():
                append_jsonl(last["train"], metrics_path)
                logger.info("epoch %d/%d: train loss %.4f top1 %.2f%% lr %.3e | %.1f clips/s (%.1f per %s), "
                            "%.0f%% of step time waiting for data%s", epochs_done, settings.max_epoch,
                            last["train"]["loss"], last["train"]["top1"], result.lr, result.clips_per_s,
                            result.clips_per_s_per_gpu, "GPU" if device.type == "cuda" else "process",
                            100 * result.data_wait_frac, f", MFU {100 * mfu:.1f}%" if mfu is not None else "")
                writer.add_scalar("epoch/train_loss", last["train"]["loss"], epochs_done)
                writer.add_scalar("epoch/train_top1", last["train"]["top1"], epochs_done)
            is_last = epochs_done == int(cfg.solver.max_epoch)
            if epochs_done % int(cfg.train.eval_period) == 0 or is_last:
                last["val"] = _validate(state, eval_forward, val_loader, device, amp_dtype, epochs_done,
                                        metrics_path, writer, int(cfg.test.max_views_per_forward))
            if epochs_done % int(cfg.train.checkpoint_period) == 0 or is_last:
                save(epochs_done, 0, ck.epoch_checkpoint_path(output_dir, epochs_done))
                if du.is_main():
                    ck.preempt_checkpoint_path(output_dir).unlink(missing_ok=True)  # superseded
            if du.broadcast_flag(preempt.signum is not None, device) and not is_last:
                logger.info("signal %s: saving %s after epoch %d", preempt.signum or signal.SIGTERM,
                            ck.preempt_checkpoint_path(output_dir), epochs_done)
                save(epochs_done, 0, ck.preempt_checkpoint_path(output_dir))
                preempt.exit()
        if du.broadcast_flag(preempt.signum is not None, device):
            logger.info("signal %s during the last epoch: training is saved, the test is left for the rerun",
                        preempt.signum or signal.SIGTERM)
            preempt.exit()
    finally:
        preempt.restore()
        if writer is not None:
            writer.close()

    if cfg.test.enable:
        from mvit_video.evaluate import test

        tested = du.is_main() and any(m.get("split") == "test" for m in read_jsonl(metrics_path))
        if finished_before and du.all_gather_object(tested)[0]:
            # Re-running a finished command: the test is done and in metrics.jsonl; do not add a second line.
            logger.info("the test already ran (see %s); test again with python -m mvit_video.evaluate",
                        metrics_path)
        else:
            last["test"] = test(cfg, model, class_names, forward=eval_forward)
    return last


def _compile_enabled(setting: Any, device: torch.device) -> bool:
    """train.compile: true | false | auto (on for CUDA; off on CPU, where compiling measured no faster)."""
    return setting is True or (setting == "auto" and device.type == "cuda")


def _mfu_inputs(cfg: DictConfig, model: torch.nn.Module, device: torch.device) -> tuple[float | None, float | None]:
    """(model FLOPs per training clip, peak FLOP/s) for the MFU figure; (None, None) off CUDA or when unknown."""
    peak = throughput.peak_flops(device, cfg.train.get("peak_tflops"))
    if peak is None or not du.is_main():
        return None, None
    from mvit_video.models.flops import count_gflops

    gflops = count_gflops(model, (1, 3, int(cfg.data.num_frames), int(cfg.data.train_crop_size),
                                  int(cfg.data.train_crop_size)))
    logger.info("MFU basis: %.1f GFLOPs per clip forward (fvcore), peak %.0f TFLOP/s", gflops, peak / 1e12)
    return throughput.train_flops_per_clip(gflops, bool(cfg.model.act_checkpoint)), peak


def _validate(state: TrainState, forward: torch.nn.Module, loader: Any, device: torch.device,
              amp_dtype: torch.dtype | None, epoch: int, metrics_path: Path, writer: Any,
              max_views: int) -> dict[str, Any] | None:
    """Multi-view val of the weights through `forward` (the model, or its compiled version), and of the EMA
    weights when enabled; rank 0 logs and writes metrics."""
    out = None
    for split, net in [("val", forward)] + ([("val_ema", state.ema.module)] if state.ema is not None else []):
        summary = validate_epoch(net, loader, device, amp_dtype, max_views)
        if summary is None:
            continue
        record = {"split": split, "epoch": epoch, "top1": summary["top1"], "top5": summary["top5"]}
        append_jsonl(record, metrics_path)
        if summary["top1"] is None:  # nothing decoded: no accuracy to log
            logger.info("epoch %d: %s top1 n/a (%d videos, %d failed)", epoch, split, summary["videos"],
                        summary["failed"])
            out = out or record
            continue
        logger.info("epoch %d: %s top1 %.2f%% top5 %.2f%% (%d videos, %d failed)", epoch, split, summary["top1"],
                    summary["top5"], summary["videos"], summary["failed"])
        writer.add_scalar(f"epoch/{split}_top1", summary["top1"], epoch)
        writer.add_scalar(f"epoch/{split}_top5", summary["top5"], epoch)
        out = out or record
    return out


def _report_bad_videos(paths: list[str], seen: set[str], output_dir: Path, epoch: int) -> None:
    """Gather the videos that failed to decode on any rank; rank 0 logs new ones once and appends them to a file."""
    gathered = du.all_gather_object(paths)
    if not du.is_main():
        return
    every = [p for ps in gathered for p in ps]
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


def _check_labels(num_classes: int, datasets: dict[str, Any]) -> None:
    """model.num_classes must match the class list and cover every label of the lists used (ConfigError)."""
    for split, ds in datasets.items():
        names = getattr(ds, "class_names", None)
        if names and len(names) != num_classes:
            raise ConfigError(f"config key 'model.num_classes' is {num_classes} but the dataset's class list "
                              f"(classes.txt / labels.json in data.path_to_data_dir) has {len(names)} classes")
        labels = getattr(ds, "labels", None) or []
        if labels and max(labels) >= num_classes:
            i = labels.index(max(labels))
            raise ConfigError(f"the {split} list has label {max(labels)} ({ds.paths[i]}) but model.num_classes is "
                              f"{num_classes}: labels must be in [0, {num_classes - 1}]")


def _cfg_key(field_name: str) -> str:
    """The config key of an MViTConfig field, as users write it."""
    if field_name in ("num_classes", "dropout_rate", "act_checkpoint", "attention"):
        return f"model.{field_name}"
    return {"num_frames": "data.num_frames", "crop_size": "data.train_crop_size"}.get(field_name, f"mvit.{field_name}")


# Keys whose change makes the resumed run another run: the LR at the resume point moves (warned about).
_SCHEDULE_KEYS = ("solver.base_lr", "solver.max_epoch", "solver.warmup_epochs", "solver.warmup_start_lr",
                  "solver.cosine_end_lr", "solver.lr_policy", "solver.cosine_after_warmup",
                  "solver.base_lr_scale_num_shards", "train.batch_size", "train.grad_accum_steps", "num_shards")
# Keys that change the optimizer's state layout: it cannot be resumed.
_OPTIMIZER_KEYS = ("solver.optimizing_method", "solver.zero_wd_1d_param", "solver.zero_decay_pos_cls")


def _changed(old: Any, new: DictConfig, keys: tuple[str, ...]) -> list[str]:
    """'key old -> new' for each of `keys` whose value differs between two configs."""
    from omegaconf import OmegaConf

    out = []
    for key in keys:
        a, b = OmegaConf.select(old, key, default=None), OmegaConf.select(new, key, default=None)
        if a is not None and a != b:
            out.append(f"{key} {a} -> {b}")
    return out


def _check_resumable(saved: dict[str, Any], cfg: DictConfig, model: torch.nn.Module, model_config: Any,
                     path: Path | None) -> None:
    """Refuse a checkpoint of another architecture or optimizer (one line naming the keys); warn about changed
    schedule or model settings that still load."""
    from omegaconf import OmegaConf

    from mvit_video.models.checkpoint import _plain

    own = _plain(dataclasses.asdict(model_config))
    theirs = saved.get("model_config") or {}
    differ = [f"{_cfg_key(k)} {theirs[k]} -> {own[k]}" for k in own if k in theirs and theirs[k] != own[k]]
    weights, shapes = saved.get("model") or {}, {k: v.shape for k, v in model.state_dict().items()}
    shapes_ok = weights.keys() == shapes.keys() and all(weights[k].shape == shapes[k] for k in shapes)
    advice = f"use another output_dir, or train.auto_resume=false to start over in {cfg.output_dir}"
    if not shapes_ok:
        raise UserError(f"cannot resume from {path}: it is another architecture "
                        f"({'; '.join(differ) or 'different weights'}); {advice}")
    old = OmegaConf.create(saved["cfg"]) if isinstance(saved.get("cfg"), str) else OmegaConf.create({})
    optimizer = _changed(old, cfg, _OPTIMIZER_KEYS)
    if optimizer:
        raise UserError(f"cannot resume from {path}: the optimizer changed ({'; '.join(optimizer)}); {advice}")
    changed = _changed(old, cfg, _SCHEDULE_KEYS) + differ
    if changed:
        logger.warning("resuming from %s with changed settings (the LR schedule and results differ from an "
                       "unchanged run): %s", path, "; ".join(changed))


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop train/val lines of epochs after `epochs_done` (and torn lines); test lines stay. Atomic rewrite."""
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


def _epoch_sums(result: Any, partial: dict[str, float] | None) -> dict[str, float]:
    """Loss/correct/clip totals of the epoch so far: this run's part plus the part before a mid-epoch resume."""
    sums = {"loss_sum": result.loss * result.clips, "correct": result.top1 * result.clips / 100.0,
            "clips": float(result.clips)}
    for key in sums:
        sums[key] += float((partial or {}).get(key, 0.0))
    return sums


@dataclass
class ResumePoint:
    """Where training continues: completed epochs, global batches into the next epoch, this rank's RNG state,
    and the loss/accuracy sums of the batches done before (so the epoch's metrics line covers all of it)."""

    epoch: int = 0
    batch: int = 0
    iteration: int = 0
    rng: dict | None = None
    partial: dict | None = None


def _restore(state: TrainState, saved: dict[str, Any], world: int, iters_per_epoch: int,
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
    return ResumePoint(epoch=int(saved["epoch"]), batch=batch, iteration=int(saved.get("iteration", 0)),
                       rng=rngs[du.get_rank()] if len(rngs) == world else None, partial=position.get("partial"))


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train from a composed config (used by the CLI and the Hydra/submitit launcher path)."""
    return train(cfg)


def _multirun_output_dir(cfg: DictConfig) -> None:
    """Under --multirun, give each job of a sweep its own output_dir, named by its overrides (stable across
    re-runs and requeues, so a job resumes only its own checkpoints). Jobs without overrides keep output_dir."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    subdir = hc.job.override_dirname.replace("/", "_")
    if len(subdir) > 120:  # many overrides: a stable short name instead of an over-long path
        subdir = f"job{hc.job.num}-{hashlib.sha1(subdir.encode()).hexdigest()[:10]}"
    if hc.mode == RunMode.MULTIRUN and subdir:
        with open_dict(cfg):
            cfg.output_dir = f"{cfg.output_dir}/{subdir}"


def _hydra_entry() -> None:
    """Hydra's own entry point: --multirun (e.g. hydra/launcher=submitit_slurm), --help, --cfg, ..."""
    import hydra

    @hydra.main(config_path="../conf", config_name="config", version_base=None)
    def hydra_main(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        _multirun_output_dir(cfg)
        try:
            run(cfg)
        except UserError as e:
            logging.getLogger("mvit_video").error("error: %s", one_line(e))
            print(f"error: {one_line(e)}", file=sys.stderr)
            sys.exit(2)
        finally:
            _remove_if_empty(Path(HydraConfig.get().runtime.output_dir))  # Hydra's own job dir (`0/`): unused

    hydra_main()


def _remove_if_empty(path: Path) -> None:
    """rmdir `path` when it exists and is empty (Hydra and submitit create directories a run never uses)."""
    try:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    except OSError:  # another task removed it or wrote into it meanwhile: leave it
        pass


@cli_errors
def _single_run(overrides: list[str]) -> None:
    run(compose(overrides))


@cli_errors
def _precheck_flags(args: list[str]) -> None:
    precheck_flag_run(args)


@cli_errors
def _precheck_multirun(args: list[str]) -> DictConfig:
    """Compose the first job of a sweep before Hydra launches anything: a wrong key fails here, in one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = []
    for o in OverridesParser.create().parse_overrides(args):
        key = o.get_key_element().lstrip("+~")
        if key.startswith("hydra"):
            continue  # launcher settings are Hydra's own
        if o.is_sweep_override():
            first = next(iter(o.sweep_string_iterator()), None)
            if first is None:
                continue
            overrides.append(f"{o.get_key_element()}={first}")
        else:
            overrides.append(o.input_line)
    cfg = validate(compose(overrides))
    launcher = next((a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("hydra/launcher=")), "")
    if "submitit" in launcher or "slurm" in launcher:
        # Hydra's own logging is off (conf/config.yaml): say here where the cluster jobs will write
        folder = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.launcher.submitit_folder=")),
                      f"{cfg.output_dir}/.submitit/%j")
        print(f"submitit: each job writes its run (train.log, metrics.jsonl, checkpoints/) under {cfg.output_dir}/ "
              f"(a subfolder per swept override set); SLURM stdout/stderr go to {folder}", file=sys.stderr)
    return cfg


def main() -> None:
    """CLI: plain runs compose with Hydra's compose API (errors become one line); flags go to Hydra itself."""
    args = sys.argv[1:]
    if any(a.startswith("-") for a in args):
        plain = [a for a in args if a not in ("-m", "--multirun")]
        sweep_dir = None
        if len(plain) < len(args) and not any(a.startswith("-") for a in plain):
            sweep_dir = Path(str(_precheck_multirun(plain).output_dir))
            print(f"multirun: each job writes to {sweep_dir}/<its overrides> (or {sweep_dir} when it has none); "
                  f"launcher logs in {sweep_dir / '.submitit'}", file=sys.stderr, flush=True)
        else:
            _precheck_flags(args)  # e.g. `--cfg job key=value`: a wrong key is one line, as in plain runs
        try:
            _hydra_entry()
        finally:
            if sweep_dir is not None:
                _remove_if_empty(sweep_dir / ".submitit" / "%j")  # submitit makes its folder pattern literally
        return
    _single_run(args)


if __name__ == "__main__":
    main()
