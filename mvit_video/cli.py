"""What the entry points (train, evaluate) share: the command line, logging, and the device/precision choice.

`main(args, task)` runs `task(cfg, explicit_keys)` for `key=value` arguments composed with Hydra's compose API (a
wrong key is one error line), and hands Hydra's own flags (--multirun, --cfg, --config-path, --help) to Hydra.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from omegaconf import DictConfig

from mvit_video.config import CONF_DIR, CONFIG_NAME, compose, precheck_flag_run
from mvit_video.settings import RunConfig
from mvit_video.utils.errors import ConfigError, UserError, cli_errors, one_line
from mvit_video.utils.progress import TqdmLoggingHandler

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

Task = Callable[[DictConfig, Sequence[str]], Any]


def setup_logging(output_dir: Path | None, rank: int, filename: str = "train.log") -> None:
    """Rank 0 logs INFO to stderr (above any progress bar) and, with `output_dir`, to <output_dir>/<filename>;
    other ranks only errors. Calling it again replaces the handlers it added before."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_mvit_video", False)]:
        root.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s %(levelname)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [TqdmLoggingHandler(sys.stderr)]
    if rank == 0 and output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / filename, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        h._mvit_video = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.INFO if rank == 0 else logging.ERROR)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`device`: auto -> CUDA when available, else CPU; `cuda` without a GPU is a ConfigError."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("config key 'device': cuda requested but no GPU is available (use device=cpu)")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_runtime(run: RunConfig, local_rank: int = 0) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype or None) of a run: train.mixed_precision auto means on with CUDA, off on CPU."""
    device = resolve_device(run.device, local_rank)
    return device, autocast_dtype(run, device)


def autocast_dtype(run: RunConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run on `device`, or None (full precision): train.mixed_precision auto means on with
    CUDA, off on CPU; training, validation and the test all use it."""
    mixed = run.train.mixed_precision
    use_amp = mixed is True or (mixed == "auto" and device.type == "cuda")
    return AMP_DTYPES[run.train.amp_dtype] if use_amp else None


def explicit_keys(overrides: Sequence[str]) -> list[str]:
    """The keys set on the command line (`data.num_frames=8` -> `data.num_frames`)."""
    return [o.split("=", 1)[0].lstrip("+~") for o in overrides]


def main(args: Sequence[str], task: Task, *, hydra_args: Callable[[list[str]], list[str]] | None = None,
         around_hydra: Callable[[list[str]], Callable[[], None]] | None = None) -> None:
    """Run `task` for a command line. Plain `key=value` arguments: composed here, errors as one line (exit 2).
    With flags: `hydra_args` may rewrite them first, a wrong key still fails in one line, then Hydra runs `task`
    per job; `around_hydra(args)` may check a sweep before and returns what to run after Hydra returns."""
    args = list(args)
    if not any(a.startswith("-") for a in args):
        cli_errors(lambda: task(compose(args), explicit_keys(args)))()
        return
    if hydra_args is not None:
        args = hydra_args(args)
    after = cli_errors(around_hydra)(args) if around_hydra is not None else None
    if after is None:
        cli_errors(precheck_flag_run)(args)
    sys.argv[1:] = args
    try:
        _hydra_main(task)
    finally:
        if after is not None:
            after()


def _hydra_main(task: Task) -> None:
    """Hydra's own entry point (its flags: --multirun with a launcher such as submitit_slurm, --cfg, --help)."""
    import hydra

    def hydra_main(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        try:
            task(cfg, explicit_keys(HydraConfig.get().overrides.task))
        except UserError as e:
            logging.getLogger("mvit_video").error("error: %s", one_line(e))
            print(f"error: {one_line(e)}", file=sys.stderr)
            sys.exit(2)

    # Hydra names the job (hydra.job.name: --help, the submitit launcher's SLURM job name) after the module of this
    # function: make it the entry point's (train, evaluate), not cli. The config path is absolute: relative to an
    # imported module, Hydra would look for a python package named `conf`.
    hydra_main.__module__ = _entry_module(task)
    hydra.main(config_path=str(CONF_DIR), config_name=CONFIG_NAME, version_base=None)(hydra_main)()


def _entry_module(task: Task) -> str:
    """The module name of `task` (`mvit_video.evaluate` also under `python -m`, where it runs as __main__)."""
    name = getattr(task, "__module__", None) or "__main__"
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if name == "__main__" and spec is not None else name
