"""Train MViTv2: `python -m mvit_video.train [+experiment=NAME] [key=value ...]`.

Everything a run writes goes to `output_dir` (default `outputs/<name>`): train.log, metrics.jsonl,
tensorboard/, checkpoints/, bad_videos.txt, config.yaml. Re-running the same command resumes from the latest
checkpoint. SIGTERM/SIGUSR1 (SLURM preemption) save `checkpoints/checkpoint_preempt.pyth` after the current step
and exit: status 0 after `scontrol requeue` succeeded (under SLURM), else 128 + signal (143 SIGTERM, 138 SIGUSR1);
under the submitit launcher the signal is handed to submitit, which requeues the job.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
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
from mvit_video.engine import checkpoint as ck
from mvit_video.engine import distributed as du
from mvit_video.engine.ema import ModelEma
from mvit_video.engine.loop import (LoopSettings, PreemptionHandler, TrainState, TrainingDiverged, interactive,
                                    params_finite, train_one_epoch, validate_epoch)
from mvit_video.engine.optim import Schedule, build_optimizer, lr_at
from mvit_video.utils.errors import ConfigError, UserError, cli_errors, one_line
from mvit_video.utils.io import append_jsonl, atomic_write_text
from mvit_video.utils.progress import TqdmLoggingHandler

logger = logging.getLogger("mvit_video.train")

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
    """DataLoader worker init: SLURM signals every process of a step; workers must not die of SIGTERM/SIGUSR1
    (the main process saves and exits; workers stop with it). Then the loader's own init runs."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
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
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, world) - int(cfg.data_loader.num_workers)))
    du.init_distributed(device.type)
    output_dir = Path(str(cfg.output_dir))
    setup_logging(output_dir, rank)
    if schedule_note:
        logger.info(schedule_note)
    try:
        return _train(cfg, device, output_dir, on_step)
    finally:
        du.cleanup()


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
    if getattr(train_set, "num_classes", None) and train_set.num_classes > num_classes:
        raise ConfigError(f"config key 'model.num_classes' is {num_classes} but the training list has "
                          f"{train_set.num_classes} classes")
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

    model = build_model(cfg).to(device)
    model_config = MViTConfig.from_cfg(cfg)
    data_config = data_config_from_cfg(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model: MViTv2 depth %s dim %s, %.2f M parameters, %d classes", cfg.mvit.get("depth"),
                cfg.mvit.get("embed_dim"), n_params / 1e6, num_classes)

    schedule = Schedule.from_cfg(cfg.solver, int(cfg.num_shards))
    if schedule.base_lr != float(cfg.solver.base_lr):
        logger.info("LR scaled by num_shards=%d: base_lr %.3g", int(cfg.num_shards), schedule.base_lr)
    optimizer = build_optimizer(model, cfg.solver, lr_at(0.0, schedule))
    use_amp = cfg.train.mixed_precision is True or (cfg.train.mixed_precision == "auto" and device.type == "cuda")
    amp_dtype = _AMP[str(cfg.train.amp_dtype)] if use_amp else None
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    ema = ModelEma(model, float(cfg.train.ema.decay)) if cfg.train.ema.enable else None
    state = TrainState(model=model, forward=model, optimizer=optimizer, schedule=schedule, scaler=scaler, ema=ema)

    # Resume (auto_resume) beats initial weights (checkpoint_file_path), as in PySlowFast.
    latest = ck.find_latest(output_dir) if cfg.train.auto_resume else None
    start = ResumePoint()
    if latest is not None:
        start = _restore(state, ck.load(latest), world, iters_per_epoch)
        logger.info("Resuming from %s (epoch %d, iteration %d)", latest, start.epoch, start.iteration)
    elif str(cfg.train.checkpoint_file_path):
        ck.load_pretrained(model, str(cfg.train.checkpoint_file_path))
        if ema is not None:
            ema.load_state_dict(model.state_dict())

    if cfg.train.compile:
        state.forward = torch.compile(model)
    if world > 1:
        state.forward = torch.nn.parallel.DistributedDataParallel(
            state.forward, device_ids=[device.index] if device.type == "cuda" else None)
    mixup = build_mixup(cfg, num_classes) if cfg.mixup.enable else None
    label_smoothing = float(cfg.mixup.label_smooth_value) if cfg.model.loss_func == "soft_cross_entropy" else 0.0
    settings = LoopSettings(device=device, amp_dtype=amp_dtype, grad_accum_steps=int(cfg.train.grad_accum_steps),
                            clip_grad_l2norm=cfg.solver.clip_grad_l2norm, label_smoothing=label_smoothing,
                            log_period=int(cfg.log_period), max_epoch=int(cfg.solver.max_epoch),
                            progress_bar=interactive())
    writer = None
    if du.is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(output_dir / "tensorboard"))
    metrics_path = output_dir / "metrics.jsonl"
    seen_bad: set[str] = set()

    def save(epochs_done: int, batches_done: int, path: Path) -> None:
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
                "sampler": {"epoch": epochs_done, "batches_done": batches_done,
                            "start_index": batches_done * per_process_batch, "world_size": world},
                "cfg": to_yaml(cfg),
            })
            ck.save(data, path)
        du.barrier()

    preempt = PreemptionHandler().install()
    last: dict[str, Any] = {}
    try:
        if start.epoch >= int(cfg.solver.max_epoch):
            logger.info("training already finished (%d epochs); nothing to train", start.epoch)
        for epoch in range(start.epoch, int(cfg.solver.max_epoch)):
            first = epoch == start.epoch
            start_batch = start.batch if first else 0
            if sampler is not None:
                sampler.set_epoch(epoch)
                sampler.set_start_index(start_batch * per_process_batch)
            # RNG states are restored where they were saved: an epoch-end checkpoint before the loader draws its
            # worker seed, a mid-epoch one after; so a resumed run draws exactly the numbers of an unbroken one.
            if first and start.rng is not None and start_batch == 0:
                ck.set_rng_state(start.rng)
            batches = iter(train_loader)
            if first and start.rng is not None and start_batch > 0:
                ck.set_rng_state(start.rng)
            result = train_one_epoch(state, batches, epoch, iters_per_epoch, settings, start_batch=start_batch,
                                     mixup=mixup, preempt=preempt, on_step=on_step, tb_writer=writer)
            _report_bad_videos(result.bad_paths, seen_bad, output_dir, epoch)
            if result.preempted_by is not None:
                path = ck.preempt_checkpoint_path(output_dir)
                logger.info("signal %d: saving %s at epoch %d, iteration %d/%d", result.preempted_by, path,
                            epoch + 1, result.batches_done, iters_per_epoch)
                save(epoch, result.batches_done, path)
                preempt.exit()
            epochs_done = epoch + 1
            last["train"] = {"split": "train", "epoch": epochs_done, "loss": result.loss, "top1": result.top1,
                             "lr": result.lr, "clips_per_s": result.clips_per_s}
            if du.is_main():
                append_jsonl(last["train"], metrics_path)
                logger.info("epoch %d/%d: train loss %.4f top1 %.2f%% lr %.3e %.1f clips/s", epochs_done,
                            settings.max_epoch, result.loss, result.top1, result.lr, result.clips_per_s)
                writer.add_scalar("epoch/train_loss", result.loss, epochs_done)
                writer.add_scalar("epoch/train_top1", result.top1, epochs_done)
            is_last = epochs_done == int(cfg.solver.max_epoch)
            if epochs_done % int(cfg.train.eval_period) == 0 or is_last:
                last["val"] = _validate(state, val_loader, device, amp_dtype, epochs_done, metrics_path, writer)
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

        last["test"] = test(cfg, model, class_names)
    return last


def _validate(state: TrainState, loader: Any, device: torch.device, amp_dtype: torch.dtype | None, epoch: int,
              metrics_path: Path, writer: Any) -> dict[str, Any] | None:
    """Multi-view val of the weights (and of the EMA weights when enabled); rank 0 logs and writes metrics."""
    out = None
    for split, net in [("val", state.model)] + ([("val_ema", state.ema.module)] if state.ema is not None else []):
        summary = validate_epoch(net, loader, device, amp_dtype)
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


@dataclass
class ResumePoint:
    """Where training continues: completed epochs, batches into the next epoch, this rank's RNG state."""

    epoch: int = 0
    batch: int = 0
    iteration: int = 0
    rng: dict | None = None


def _restore(state: TrainState, saved: dict[str, Any], world: int, iters_per_epoch: int) -> ResumePoint:
    """Load weights, optimizer, scaler, EMA and step count from a training checkpoint; return where to go on."""
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    if state.scaler is not None and saved.get("scaler"):
        state.scaler.load_state_dict(saved["scaler"])
    if state.ema is not None:
        state.ema.load_state_dict(saved["ema"] if saved.get("ema") else state.model.state_dict())
    state.step = int(saved["scheduler"]["step"])
    position = saved.get("sampler") or {}
    batch = int(position.get("batches_done", 0))
    saved_world = int(position.get("world_size", world))
    if batch and saved_world != world:
        # Another world size orders samples differently: keep the global count, start at the next batch.
        batch = min(math.ceil(batch * saved_world / world), iters_per_epoch)
        logger.warning("resuming mid-epoch with %d processes instead of %d: the sample order differs",
                       world, saved_world)
    rngs = saved.get("rng") or []
    return ResumePoint(epoch=int(saved["epoch"]), batch=batch, iteration=int(saved.get("iteration", 0)),
                       rng=rngs[du.get_rank()] if len(rngs) == world else None)


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
        _multirun_output_dir(cfg)
        try:
            run(cfg)
        except UserError as e:
            logging.getLogger("mvit_video").error("error: %s", one_line(e))
            print(f"error: {one_line(e)}", file=sys.stderr)
            sys.exit(2)

    hydra_main()


@cli_errors
def _single_run(overrides: list[str]) -> None:
    run(compose(overrides))


@cli_errors
def _precheck_flags(args: list[str]) -> None:
    precheck_flag_run(args)


@cli_errors
def _precheck_multirun(args: list[str]) -> None:
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


def main() -> None:
    """CLI: plain runs compose with Hydra's compose API (errors become one line); flags go to Hydra itself."""
    args = sys.argv[1:]
    if any(a.startswith("-") for a in args):
        plain = [a for a in args if a not in ("-m", "--multirun")]
        if len(plain) < len(args) and not any(a.startswith("-") for a in plain):
            _precheck_multirun(plain)
        else:
            _precheck_flags(args)  # e.g. `--cfg job key=value`: a wrong key is one line, as in plain runs
        _hydra_entry()
        return
    _single_run(args)


if __name__ == "__main__":
    main()
