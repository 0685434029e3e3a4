"""Where a training run writes, and how sweeps launch: the output_dir lock, and Hydra --multirun (e.g. the
submitit SLURM launcher) giving each job its own output_dir."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, open_dict

from mvit_video.config import build_config, compose
from mvit_video.engine import distributed as du
from mvit_video.engine.runlock import RunLock
from mvit_video.utils.errors import ConfigError, UserError


def lock_output_dir(output_dir: Path) -> RunLock | None:
    """Rank 0 checks output_dir is a writable directory and takes its run lock; every rank fails if it could not."""
    lock, error = None, None
    if du.is_main():
        try:
            lock = _take_lock(output_dir)
        except UserError as e:
            error = e
    first = du.all_gather_object(str(error) if error is not None else None)[0]
    if error is not None:
        raise error
    if first is not None:
        raise UserError(first)
    return lock


def _take_lock(output_dir: Path) -> RunLock:
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"config key 'output_dir': {output_dir} is a file, not a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        return RunLock(output_dir).acquire()
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"config key 'output_dir': {output_dir} is below a file, not a directory") from None
    except PermissionError:
        raise ConfigError(f"config key 'output_dir': {output_dir} is not writable") from None
    except OSError as e:
        raise ConfigError(f"config key 'output_dir': cannot write to {output_dir} ({e.strerror})") from None


def multirun_output_dir(cfg: DictConfig) -> None:
    """Under --multirun, give each job of a sweep its own output_dir, named by its overrides (stable across
    re-runs and requeues, so a job resumes only its own checkpoints). Jobs without overrides keep output_dir."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    subdir = hc.job.override_dirname.replace("/", "_")
    if len(subdir) > 120:  # many overrides: a stable short name instead of an over-long path
        subdir = f"job{hc.job.num}-{hashlib.sha1(subdir.encode()).hexdigest()[:10]}"
    if hc.mode == RunMode.MULTIRUN and subdir:
        with open_dict(cfg):
            cfg.output_dir = f"{cfg.output_dir}/{subdir}"


def remove_hydra_job_dir() -> None:
    """Hydra creates a job folder (`0/`) that our runs never use: remove it when empty."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        _remove_if_empty(Path(HydraConfig.get().runtime.output_dir))


def _remove_if_empty(path: Path) -> None:
    """rmdir `path` when it exists and is empty (Hydra and submitit create directories a run never uses)."""
    try:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    except OSError:  # another task removed it or wrote into it meanwhile: leave it
        pass


def check_sweep(args: list[str]) -> Callable[[], None] | None:
    """For `--multirun` command lines: compose the first job of the sweep before Hydra launches anything (a wrong
    key fails here, in one line), say where the jobs write, and return what to tidy after Hydra returns. None
    for other flag command lines."""
    plain = [a for a in args if a not in ("-m", "--multirun")]
    if len(plain) == len(args) or any(a.startswith("-") for a in plain):
        return None
    sweep_dir = Path(precheck_multirun(plain).output_dir)
    print(f"multirun: each job writes to {sweep_dir}/<its overrides> (or {sweep_dir} when it has none); "
          f"launcher logs in {sweep_dir / '.submitit'}", file=sys.stderr, flush=True)
    return lambda: _remove_if_empty(sweep_dir / ".submitit" / "%j")  # submitit makes its pattern literally


def precheck_multirun(args: list[str]) -> DictConfig:
    """Compose and check the first job of a sweep; for the submitit launcher, say where the cluster jobs write."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = []
    for o in OverridesParser.create().parse_overrides(args):
        if o.get_key_element().lstrip("+~").startswith("hydra"):
            continue  # launcher settings are Hydra's own
        if o.is_sweep_override():
            first = next(iter(o.sweep_string_iterator()), None)
            if first is not None:
                overrides.append(f"{o.get_key_element()}={first}")
        else:
            overrides.append(o.input_line)
    cfg = compose(overrides)
    build_config(cfg)
    launcher = next((a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("hydra/launcher=")), "")
    if "submitit" in launcher or "slurm" in launcher:
        # Hydra's own logging is off (conf/config.yaml): say here where the cluster jobs will write
        folder = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.launcher.submitit_folder=")),
                      f"{cfg.output_dir}/.submitit/%j")
        print(f"submitit: each job writes its run (train.log, metrics.jsonl, checkpoints/) under {cfg.output_dir}/ "
              f"(a subfolder per swept override set); SLURM stdout/stderr go to {folder}", file=sys.stderr)
    return cfg
