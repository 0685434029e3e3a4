"""What the entry points (train, evaluate) share: the command line, logging, and the device/precision choice.

`main(args, task)` runs `task(cfg, explicit_keys)` for `key=value` arguments composed with Hydra's compose API (a
wrong key is one error line), and hands Hydra's own flags (--multirun, --cfg, --config-path, --help) to Hydra.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mvit_video.utils.errors import ConfigError, UserError, cli_errors, one_line

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from mvit_video.settings import RunConfig

# torch, omegaconf, hydra and the config/settings modules are imported where they are used: `--help` and a wrong
# key must not pay for torch (seconds of CPU) before printing a line.

Task = Callable[["DictConfig", Sequence[str]], Any]


def setup_logging(output_dir: Path | None, rank: int, filename: str = "train.log") -> None:
    """Rank 0 logs INFO to stderr (above any progress bar) and, with `output_dir`, to <output_dir>/<filename>;
    other ranks only errors. Calling it again replaces the handlers it added before."""
    from mvit_video.utils.progress import TqdmLoggingHandler

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
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("config key 'device': cuda requested but no GPU is available (use device=cpu)")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_runtime(run: RunConfig, local_rank: int = 0) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype or None) of a run: train.mixed_precision auto means on with CUDA, off on CPU."""
    from mvit_video.settings import autocast_dtype

    device = resolve_device(run.device, local_rank)
    return device, autocast_dtype(run, device)


def as_user_error(error: BaseException) -> UserError | None:
    """A failure the user causes that arrives as an OS or torch error, as a one-line UserError: a full disk
    (ENOSPC/EDQUOT, and torch's `inline_container.cc` error that follows a checkpoint write cut by it), an invalid
    learning rate, running out of memory. None for anything else (a bug: its traceback is wanted)."""
    text = str(error).strip()
    first = text.splitlines()[0][:200] if text else type(error).__name__
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {error.filename}" if error.filename else ""
        return UserError(f"disk full{where} ({error.strerror}): free space there or point output_dir at another "
                         f"disk; what was already written (checkpoints, metrics.jsonl) is intact")
    if isinstance(error, RuntimeError) and ("inline_container.cc" in text or "PytorchStreamWriter failed" in text):
        return UserError(f"writing a checkpoint failed ({first}); usually the disk is full: free space or point "
                         f"output_dir at another disk; earlier checkpoints are intact (writes are atomic)")
    if isinstance(error, ValueError) and text.startswith("Invalid learning rate"):
        return UserError(f"{first}: check solver.base_lr, solver.warmup_start_lr and solver.cosine_end_lr")
    torch = sys.modules.get("torch")  # only loaded when something ran that could run out of memory on a device
    oom_types = (MemoryError,) + ((torch.cuda.OutOfMemoryError,) if torch is not None else ())
    if isinstance(error, oom_types) or (
            isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)):
        return UserError(f"out of memory ({first}): lower the batch size (train.batch_size, test.batch_size), the "
                         f"crop or frames, or set model.act_checkpoint=true")
    return None


def _user_errors(task: Task) -> Task:
    """`task` with the failures of `as_user_error` raised as UserError (one line), the original chained."""

    def run(cfg: DictConfig, keys: Sequence[str]) -> Any:
        try:
            return task(cfg, keys)
        except (OSError, RuntimeError, ValueError, MemoryError) as e:
            mapped = as_user_error(e)
            if mapped is None:
                raise
            raise mapped from e

    run.__module__ = getattr(task, "__module__", run.__module__)  # Hydra names the job after the entry point
    return run


def explicit_keys(overrides: Sequence[str]) -> list[str]:
    """The keys set on the command line (`data.num_frames=8` -> `data.num_frames`)."""
    return [o.split("=", 1)[0].lstrip("+~") for o in overrides]


def main(args: Sequence[str], task: Task, *, hydra_args: Callable[[list[str]], list[str]] | None = None,
         around_hydra: Callable[[list[str]], Callable[[], None]] | None = None, usage: str | None = None) -> None:
    """Run `task` for a command line. Plain `key=value` arguments: composed here, errors as one line (exit 2).
    With flags: `hydra_args` may rewrite them first, a wrong key still fails in one line, then Hydra runs `task`
    per job; `around_hydra(args)` may check a sweep before and returns what to run after Hydra returns.
    `-h`/`--help` prints `usage` (a usage line and examples) and the presets and config groups."""
    args = list(args)
    if usage is not None and {"-h", "--help"} & set(args):
        print(help_text(usage))
        return
    from mvit_video.config import compose, precheck_flag_run

    task = _user_errors(task)
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
    from omegaconf import DictConfig

    from mvit_video.config import CONF_DIR, CONFIG_NAME

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


def help_text(usage: str) -> str:
    """`usage` (a usage line and examples), then what can be chosen: presets, config groups, where every key is."""
    import textwrap

    from mvit_video.config import CONF_DIR as conf  # noqa: N811 -- config imports omegaconf, not torch

    def names(group: str) -> str:
        return ", ".join(sorted(p.stem for p in (conf / group).glob("*.yaml"))) or "-"

    if not conf.is_dir():  # not installed from a checkout: compose() will say so; the usage is still useful
        return usage.strip("\n")
    groups = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name not in ("experiment", "hydra"))
    wrap = lambda text: textwrap.fill(text, 115, subsequent_indent="  ", break_on_hyphens=False)  # noqa: E731
    lines = [usage.strip("\n"), "", wrap(f"presets (+experiment=NAME): {names('experiment')}"),
             wrap("config groups (group=NAME): " + "; ".join(f"{g}: {names(g)}" for g in groups)),
             wrap(f"every key and its default: {conf / 'config.yaml'} (`--cfg job` prints the composed config)"),
             "Hydra's flags also work: -m/--multirun, --cfg job, --config-path DIR --config-name NAME, --hydra-help"]
    return "\n".join(lines)


def _entry_module(task: Task) -> str:
    """The module name of `task` (`mvit_video.evaluate` also under `python -m`, where it runs as __main__)."""
    name = getattr(task, "__module__", None) or "__main__"
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if name == "__main__" and spec is not None else name


# ------------------------------------------------------------------------------- sweeps (--multirun)


SWEEP_INDEX = "sweep.jsonl"  # one line per job of a sweep: {"job", "dir", "overrides"} (read by summary)
MAX_JOB_DIR = 80  # longer job folder names become job<N>-<hash>


def swept_keys(task_overrides: Sequence[str]) -> list[str]:
    """The config keys a command line sweeps (`solver.base_lr=1e-3,1e-4`, `range(...)`, `glob(...)`), in order;
    Hydra's own keys are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = []
    for o in OverridesParser.create().parse_overrides(list(task_overrides)):
        key = o.get_key_element().lstrip("+~")
        if o.is_sweep_override() and not key.startswith("hydra"):
            keys.append(key)
    return keys


def job_dir_name(job_overrides: Sequence[str], swept: Sequence[str], job_num: int) -> str:
    """A sweep job's folder: its values of the swept keys, `base_lr=0.001,max_epoch=2` (the last part of each key
    when that is unambiguous), so folders are short and stable across re-runs and requeues; job<N>-<hash> when
    that is still long; "" when nothing is swept."""
    values = {}
    for o in job_overrides:
        key, _, value = o.partition("=")
        if key.lstrip("+~") in swept:
            values[key.lstrip("+~")] = value
    if not values:
        return ""
    name = ",".join(f"{n}={v}" for n, v in zip(_short_names(list(values)), values.values())).replace("/", "_")
    if len(name) > MAX_JOB_DIR:
        name = f"job{job_num}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    return name


def _short_names(keys: list[str]) -> list[str]:
    """The last part of each key (solver.base_lr -> base_lr) when those are all different, else the keys."""
    short = [k.rsplit(".", 1)[-1] for k in keys]
    return short if len(set(short)) == len(short) else keys


def multirun_output_dir(cfg: DictConfig) -> None:
    """Under --multirun, give each job of a sweep its own output_dir under the sweep's, named by the values of the
    swept keys (job_dir_name; the swept keys come from the multirun.yaml Hydra writes before any job starts), and
    record it in <sweep>/sweep.jsonl. Nothing swept (e.g. one job sent to SLURM): output_dir as it is."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return
    job_overrides = list(hc.overrides.task)
    sweep_file = Path(hc.sweep.dir) / "multirun.yaml"  # written by the sweeper before any job starts
    if sweep_file.is_file():
        from omegaconf import OmegaConf

        swept = swept_keys(OmegaConf.load(sweep_file).hydra.overrides.task)
        subdir = job_dir_name(job_overrides, swept, hc.job.num)
    else:  # another sweeper plugin: a stable name from all the job's overrides
        name = hc.job.override_dirname
        subdir = f"job{hc.job.num}-{hashlib.sha1(name.encode()).hexdigest()[:10]}" if name else ""
    if not subdir:
        return
    _record_job(Path(cfg.output_dir), {"job": hc.job.num, "dir": subdir, "overrides": job_overrides})
    with open_dict(cfg):
        cfg.output_dir = f"{cfg.output_dir}/{subdir}"


def _record_job(sweep_dir: Path, record: dict[str, Any]) -> None:
    """Append the job's line to <sweep>/sweep.jsonl unless already there (a re-run, a requeue, another task of
    the same job): one short write in append mode, so concurrent jobs do not mix their lines."""
    import json

    index = sweep_dir / SWEEP_INDEX
    line = json.dumps(record, sort_keys=True)
    try:
        if index.is_file() and line in index.read_text(encoding="utf-8").splitlines():
            return
        with open(index, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as e:  # the index is a convenience: a job never fails for it
        logging.getLogger(__name__).warning("cannot write %s: %s", index, e)


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
    swept = swept_keys(plain)
    where = f"{sweep_dir}/<{','.join(_short_names(swept))}=...>" if swept else str(sweep_dir)
    print(f"multirun: each job writes to {where} (listed in {sweep_dir / SWEEP_INDEX}); compare them with "
          f"python -m mvit_video.summary {sweep_dir}", file=sys.stderr, flush=True)
    if not _launcher(args):  # Hydra's basic launcher; submitit's print their own line (precheck_multirun)
        print("multirun: jobs run one after another in this process; each logs to its own train.log",
              file=sys.stderr, flush=True)
    return lambda: _remove_if_empty(sweep_dir / ".submitit" / "%j")  # submitit makes its pattern literally


def _launcher(args: Sequence[str]) -> str:
    """The hydra/launcher=... a command line chooses ("" for Hydra's basic launcher)."""
    return next((a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("hydra/launcher=")), "")


def precheck_multirun(args: list[str]) -> DictConfig:
    """Compose and check the first job of a sweep; for the submitit launcher, say where the cluster jobs write."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mvit_video.config import build_config, compose

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
    launcher = _launcher(args)
    if "slurm" in launcher and shutil.which("srun") is None:
        # submitit's SLURM executor needs srun/sbatch; off a cluster it ends in a long traceback
        raise ConfigError(f"hydra/launcher={launcher} submits jobs to SLURM, but `srun` is not on PATH (not a SLURM "
                          f"login node?): run the command on the cluster, or try the sweep on this machine with "
                          f"hydra/launcher=submitit_local")
    if "submitit" in launcher or "slurm" in launcher:
        # Hydra's own logging is off (conf/config.yaml): say here where the cluster jobs will write
        folder = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.launcher.submitit_folder=")),
                      f"{cfg.output_dir}/.submitit/%j")
        print(f"submitit: each job writes its run (train.log, metrics.jsonl, checkpoints/) under {cfg.output_dir}/ "
              f"(a subfolder per swept override set); SLURM stdout/stderr go to {folder}", file=sys.stderr)
    return cfg
