"""The Hydra edge: compose conf/ (Hydra compose API), turn its errors into one line, and convert the result once
into typed settings (build_config -> mvit_video.settings.RunConfig): a wrong key or value fails before training,
named."""

from __future__ import annotations

import copy
import logging
import math
import re
import typing
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from mvit_video.models.config import MViTConfig
from mvit_video.settings import (MODEL_FIELD_KEYS, DataConfig, RunConfig, clip_protocol, dataset_entry, from_mapping,
                                 import_custom, model_key)
from mvit_video.utils.errors import ConfigError

logger = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
CONFIG_NAME = "config"


def compose(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides (as on the command line); errors become ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    config_dir = Path(config_dir or CONF_DIR)
    if not (config_dir / f"{CONFIG_NAME}.yaml").is_file():
        raise ConfigError(f"{config_dir / CONFIG_NAME}.yaml not found (is the package installed from a checkout?)")
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None, job_name="train"):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(hydra_error_line(e, overrides)) from None
    return cfg


# Hydra flags that take a value (`--cfg job`, `--config-path DIR`); `--info` takes one optionally.
_VALUE_FLAGS = {"--cfg", "-c", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--package",
                "-p", "--info", "-i", "--experimental-rerun"}


def split_hydra_args(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Command-line words -> (key=value overrides, {flag: value}) as Hydra's own parser reads them."""
    overrides: list[str] = []
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            name, eq, value = a.partition("=")
            if not eq and name in _VALUE_FLAGS and i + 1 < len(args) and not args[i + 1].startswith("-") \
                    and ("=" not in args[i + 1] or name in ("--config-path", "-cp", "--config-dir", "-cd")):
                value = args[i + 1]
                i += 1
            flags[name] = value
        else:
            overrides.append(a)
        i += 1
    return overrides, flags


def precheck_flag_run(args: Sequence[str]) -> list[str]:
    """Compose the overrides of a Hydra-flag command line (`--cfg job`, `--config-path RUN ...`) with the compose
    API first, so that a wrong key is one line (ConfigError) instead of Hydra's multi-line report. Returns the
    overrides (sweeps not expanded). Help/version flags and foreign config names are left to Hydra."""
    overrides, flags = split_hydra_args(args)
    if {"-h", "--help", "--hydra-help", "--version", "--shell-completion", "-sc"} & set(flags):
        return overrides
    if flags.get("--config-name", flags.get("-cn", CONFIG_NAME)) != CONFIG_NAME:
        return overrides
    if "-m" in flags or "--multirun" in flags:
        return overrides  # Hydra expands the sweep; each job composes and checks its own values
    config_dir = flags.get("--config-path") or flags.get("-cp")
    compose([o for o in overrides if not o.lstrip("+~").startswith("hydra")], config_dir=config_dir)
    return overrides


def hydra_error_line(error: BaseException, overrides: Sequence[str] = ()) -> str:
    """Turn Hydra/OmegaConf's multi-line composition error into one line that names the key."""
    text = "\n".join(str(e) for e in (error, error.__cause__) if e is not None)
    unmatched_group = re.search(r"Could not override '([^']+)'\. No match in the defaults list", text)
    if unmatched_group and (CONF_DIR / unmatched_group.group(1)).is_dir():
        # `experiment=NAME`: experiment is a config group that is not in the defaults list, so it needs a `+`
        group = unmatched_group.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == group), "NAME")
        return f"'{group}' is not in the defaults list: did you mean +{group}={value} ?"
    if "not in struct" in text or "Could not override" in text and "To append" in text:
        full_key = re.search(r"full_key:\s*(\S+)", text)
        key = full_key.group(1) if full_key else _first_override_key(text, overrides)
        # a misspelt group (solvr.base_lr) is reported at the group: name the whole override key instead
        key = next((o.split("=", 1)[0].lstrip("+~") for o in overrides
                    if o.split("=", 1)[0].lstrip("+~").startswith(key + ".")), key)
        return f"unknown config key '{key}'{_did_you_mean(key, known_keys())} (every key is listed in " \
               f"conf/config.yaml)"
    missing_group = re.search(r"Could not find '([^']+)'", text)
    if missing_group:
        group = missing_group.group(1)
        options = re.search(r"Available options in '[^']+':\s*(.*?)(?:Config search path|$)", text, re.S)
        names = options.group(1).split() if options else []
        avail = ", ".join(names)
        hint = _did_you_mean(group.rsplit("/", 1)[-1], names)
        return f"unknown config choice '{group}'{hint}" + (f" (available: {avail})" if avail else "")
    if "mismatched input '='" in text or "token recognition error" in text:
        bad = next((o for o in overrides if "=" in o.split("=", 1)[-1]), None)
        if bad is not None:
            key, value = bad.split("=", 1)
            return (f"override {bad!r}: a value containing '=' must be quoted for Hydra, e.g. "
                    f"'{key}=\"{value}\"' (shell quotes around double quotes)")
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return "; ".join(lines[:3]) if lines else type(error).__name__


def known_keys(config_dir: str | Path | None = None) -> list[str]:
    """Every dotted key of conf/config.yaml (which lists them all), for did-you-mean suggestions."""
    root = OmegaConf.load(Path(config_dir or CONF_DIR) / f"{CONFIG_NAME}.yaml")
    keys: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for k in node:
            full = f"{prefix}{k}"
            value = node._get_node(k)  # without resolving interpolations such as ${name}
            if isinstance(value, DictConfig):
                walk(value, full + ".")
            else:
                keys.append(full)

    walk(root, "")
    return [k for k in keys if not k.startswith(("defaults", "hydra."))]


def _did_you_mean(word: str, candidates: Sequence[str]) -> str:
    """' (did you mean X?)' for the closest candidates (difflib), or ''."""
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)
    if not close and "." in word:  # a wrong group with a right leaf (data.num_frame -> data.num_frames)
        leaf = word.rsplit(".", 1)[-1]
        close = [c for c in difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in candidates], n=3)
                 for c in [k for k in candidates if k.endswith("." + c)]][:3]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _first_override_key(text: str, overrides: Sequence[str]) -> str:
    """Best guess of the offending key: the override Hydra quotes, else the first override."""
    quoted = re.search(r"Could not override '([^']+)'", text)
    if quoted:
        return quoted.group(1)
    return overrides[0].split("=")[0] if overrides else "?"


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML text (stored in checkpoints and in <output_dir>/config.yaml)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


# ---------------------------------------------------------------------------------------- typed settings


def build_config(cfg: DictConfig, world_size: int = 1, check_paths: bool = False, *,
                 num_shards: int | None = None) -> RunConfig:
    """The composed Hydra config as typed, validated settings (mvit_video.settings), built once at the edge; the
    notes of `build_config_and_notes` (a shortened warmup) are logged. `cfg` is left unchanged."""
    run, notes = build_config_and_notes(cfg, world_size, check_paths, num_shards=num_shards)
    for note in notes:
        logger.info(note)
    return run


def build_config_and_notes(cfg: DictConfig, world_size: int = 1, check_paths: bool = False, *,
                           num_shards: int | None = None) -> tuple[RunConfig, list[str]]:
    """The typed settings of `cfg` and the lines to tell the user about them, without logging or changing `cfg`.

    Types and per-key bounds are checked by the dataclasses; this adds what spans keys (world size, schedule,
    crop sizes) and, with `check_paths`, that the folders and files named exist. Errors name the key, in one line.
    `num_shards`: the number of nodes a launcher (SLURM, torchrun) started, which replaces the config's (the LR is
    scaled by it); as `world_size`, it comes from the environment, not from the config. A warmup that does not fit
    the run is shortened (`fit_schedule`); the settings and their YAML hold the values used.
    """
    cfg, notes = _resolved_edits(cfg, num_shards)
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain = {k: v for k, v in plain.items() if k not in ("defaults", "hydra")}
    if not str(plain.get("output_dir") or ""):
        raise ConfigError("config key 'output_dir' is empty")
    import_custom(plain.get("custom_imports"))  # before data.dataset is checked against the registered names
    dataset = (plain.get("data") or {}).get("dataset")
    if isinstance(dataset, str):
        dataset_entry(dataset)  # an unknown name: the error says how a dataset is added
    model, mvit = dict(plain.pop("model", None) or {}), dict(plain.pop("mvit", None) or {})
    loss_func = model.pop("loss_func", None)
    data = from_mapping(DataConfig, plain.pop("data", None) or {}, prefix="data")
    run = from_mapping(RunConfig, {**plain, "data": data, "loss_func": loss_func, "yaml": to_yaml(cfg),
                                   "model": _model_config(model, mvit, data)}, prefix="")
    _check_across_keys(run, world_size)
    if check_paths:
        _check_paths(run)
    return run, notes


def _resolved_edits(cfg: DictConfig, num_shards: int | None) -> tuple[DictConfig, list[str]]:
    """`cfg` with what the edge decides beyond the user's keys (the launcher's num_shards, a warmup that fits the
    run): a copy when anything changes, `cfg` itself otherwise; and the notes to log."""
    warmup, note = fit_schedule(cfg)
    if warmup is None and (num_shards is None or num_shards == cfg.get("num_shards")):
        return cfg, []
    cfg = copy.deepcopy(cfg)  # the caller's config stays as composed
    with open_dict(cfg):
        if num_shards is not None:
            cfg.num_shards = num_shards  # PySlowFast NUM_SHARDS = number of nodes
        if warmup is not None:
            cfg.solver.warmup_epochs = warmup
    return cfg, [note] if note else []


def _model_config(model: dict[str, Any], mvit: dict[str, Any], data: DataConfig) -> MViTConfig:
    """MViTConfig from model.* (the network's MODEL.* keys), mvit.* and the input size it is built for."""
    names = {f.name: f for f in fields(MViTConfig)}
    hints = typing.get_type_hints(MViTConfig)
    model_keys = [k for k, key in MODEL_FIELD_KEYS.items() if key.startswith("model.")]
    for key in model:
        if key not in model_keys:
            raise ConfigError(f"unknown config key 'model.{key}'{_did_you_mean(f'model.{key}', known_keys())}")
    for key in mvit:
        if key not in names or key in MODEL_FIELD_KEYS:
            raise ConfigError(f"unknown config key 'mvit.{key}' (not an MVIT option of this model)")
    values = {**mvit, **model, "num_frames": data.num_frames, "crop_size": data.train_crop_size}
    for key, value in values.items():
        if hints[key] is bool and not isinstance(value, bool):  # "no" would read as true
            raise ConfigError(f"config key '{model_key(key)}': expected true, false, got {value!r}")
        if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"config key '{model_key(key)}': expected a finite number, got {value!r}")
    try:
        return MViTConfig(**values)
    except ConfigError as e:
        key, _, rest = str(e).partition(":")  # MViTConfig names its field: say the key as users write it
        raise ConfigError(f"config key '{model_key(key)}':{rest}") from None


def _check_across_keys(run: RunConfig, world_size: int) -> None:
    """Rules that span several keys, or that a field's type and bounds cannot express."""
    data, train, solver, test = run.data, run.train, run.solver, run.test
    low, high = data.train_jitter_scales
    if low > high:
        raise ConfigError(f"config key 'data.train_jitter_scales': expected [min, max], got {[low, high]}")
    rel = data.train_jitter_scales_relative
    if rel and (len(rel) != 2 or rel[0] > rel[1] or rel[1] > 1.0):
        raise ConfigError(f"config key 'data.train_jitter_scales_relative': expected [] or [min, max<=1], "
                          f"got {list(rel)}")
    name = data.dataset
    if clip_protocol(name).frame_grid and data.frame_grid_fps == 0:
        # only the dataset's data group (conf/data/ssv2.yaml) sets its protocol (frame grid, test views, jitter):
        # `data.dataset=ssv2` over another data group would silently sample unlike PySlowFast
        raise ConfigError(f"config key 'data.dataset': {name} with data.frame_grid_fps 0 keeps another data "
                          f"group's protocol (frame grid, test views, crops); choose {name} with data={name} (or an "
                          f"{name} experiment), not data.dataset={name} (to sample the videos at their own rate, set "
                          f"data.frame_grid_fps to it)")
    if train.batch_size % world_size != 0:
        raise ConfigError(f"config key 'train.batch_size': {train.batch_size} is not divisible by the world size "
                          f"{world_size} (it is the global batch; per process = batch_size / world size)")
    if solver.cosine_end_lr >= solver.base_lr:
        raise ConfigError(f"config key 'solver.cosine_end_lr': must be below solver.base_lr ({solver.base_lr}), "
                          f"got {solver.cosine_end_lr}")
    if test.num_spatial_crops == 1 and low < data.test_crop_size:
        # 1-crop testing resizes the short side to train_jitter_scales[0], then takes the center test_crop_size
        raise ConfigError(f"config key 'data.train_jitter_scales': its min {low} is the short side before the "
                          f"1-crop test view and must be >= data.test_crop_size ({data.test_crop_size})")


def _check_paths(run: RunConfig) -> None:
    """The data folder, initial weights and resume checkpoint named in the config exist."""
    data = run.data
    if data.dataset == "synthetic" and data.path_to_data_dir:
        from mvit_video.data.synthetic import check_synthetic_root

        check_synthetic_root(data.path_to_data_dir)  # before anything is generated into a user's folder
    if data.dataset != "synthetic":
        root = data.path_to_data_dir
        if not root:
            raise ConfigError(f"config key 'data.path_to_data_dir' is empty: set it to the folder with the "
                              f"{data.dataset} list files (train.csv, val.csv, ...)")
        if not Path(root).is_dir():
            raise ConfigError(f"config key 'data.path_to_data_dir': {root} is not a directory")
    for key, path in (("train.checkpoint_file_path", run.train.checkpoint_file_path),
                      ("train.resume_from", run.train.resume_from)):
        if key == "train.checkpoint_file_path" and path.startswith("torchvision:"):
            continue  # named weights (models.convert.named_checkpoint): fetched or refused when loaded
        if path and not Path(path).is_file():
            raise ConfigError(f"config key '{key}': {path} does not exist")


def fit_schedule(cfg: DictConfig) -> tuple[float | None, str | None]:
    """A warmup as long as the run (a preset's 30 warmup epochs with solver.max_epoch=1) is cut to half the run:
    (the warmup_epochs to use, the line to log), or (None, None) when the schedule fits. `cfg` is not changed."""
    warmup, max_epoch = cfg.solver.warmup_epochs, cfg.solver.max_epoch
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or isinstance(max_epoch, bool) \
            or not isinstance(max_epoch, int) or max_epoch < 1 or warmup < max_epoch or not math.isfinite(warmup):
        return None, None  # fits, or a wrong value that build_config reports
    return max_epoch / 2, (f"solver.warmup_epochs={warmup} is not shorter than solver.max_epoch={max_epoch}: "
                           f"warmup shortened to {max_epoch / 2} epochs (half the run)")


def shorten_schedule(cfg: DictConfig) -> str | None:
    """Deprecated (build_config shortens the warmup on its own copy; `fit_schedule` says whether and how): sets
    the shortened warmup in `cfg` itself and returns the line to log, or None when the schedule fits."""
    warnings.warn("mvit_video.config.shorten_schedule is deprecated and will be removed in the next release; "
                  "build_config shortens the warmup itself (mvit_video.config.fit_schedule says how)",
                  DeprecationWarning, stacklevel=2)
    warmup, note = fit_schedule(cfg)
    if warmup is not None:
        with open_dict(cfg):
            cfg.solver.warmup_epochs = warmup
    return note
