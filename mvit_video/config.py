"""Config composition (Hydra compose API) and validation: a wrong key or value fails before training, named."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

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
        return overrides  # sweep values are expanded by the caller (train's multirun precheck)
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


# ---------------------------------------------------------------------------------------------- validation


def _get(cfg: DictConfig, key: str) -> Any:
    """cfg value at dotted `key`; a missing key is a ConfigError naming it."""
    value = OmegaConf.select(cfg, key, throw_on_missing=False, default=_MISSING)
    if value is _MISSING:
        raise ConfigError(f"config key '{key}' is missing")
    return value


_MISSING = object()


def _choice(cfg: DictConfig, key: str, options: Sequence[Any]) -> None:
    value = _get(cfg, key)
    if value not in options:
        raise ConfigError(f"config key '{key}': expected one of {', '.join(map(str, options))}, got {value!r}")


def _number(cfg: DictConfig, key: str, *, integer: bool = False, min_value: float | None = None,
            max_value: float | None = None, strict_min: bool = False) -> float:
    value = _get(cfg, key)
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(f"config key '{key}': expected {kind}, got {value!r}")
    if min_value is not None and (value < min_value or (strict_min and value == min_value)):
        bound = f"> {min_value}" if strict_min else f">= {min_value}"
        raise ConfigError(f"config key '{key}': expected {bound}, got {value!r}")
    if max_value is not None and value > max_value:
        raise ConfigError(f"config key '{key}': expected <= {max_value}, got {value!r}")
    return value


def _list(cfg: DictConfig, key: str, length: int | None = None, positive: bool = False) -> list:
    value = _get(cfg, key)
    if not isinstance(value, (list, tuple, ListConfig)):
        raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
    value = list(value)
    if length is not None and len(value) != length:
        raise ConfigError(f"config key '{key}': expected {length} values, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise ConfigError(f"config key '{key}': expected numbers, got {value!r}")
    if positive and any(v <= 0 for v in value):
        raise ConfigError(f"config key '{key}': expected positive numbers, got {value!r}")
    return value


# Keys that take true/false only: any other string ("no", "off") would read as true.
BOOL_KEYS = (
    "model.act_checkpoint",
    *(f"mvit.{k}" for k in ("qkv_bias", "cls_embed_on", "use_abs_pos", "sep_pos_embed", "use_mean_pooling",
                            "norm_stem", "pool_first", "rel_pos_spatial", "rel_pos_temporal", "rel_pos_zero_init",
                            "residual_pooling", "dim_mul_in_att", "separate_qkv")),
    "data.use_offset_sampling", "data.inv_uniform_sample", "data.random_flip",
    "aug.enable", "mixup.enable", "data_loader.pin_memory", "data_loader.persistent_workers",
    "train.enable", "train.auto_resume", "train.ema.enable",
    "solver.base_lr_scale_num_shards", "solver.cosine_after_warmup", "solver.nesterov", "solver.zero_wd_1d_param",
    "solver.zero_decay_pos_cls", "test.enable", "test.use_ema",
)


def _bool(cfg: DictConfig, key: str, also: Sequence[str] = ()) -> None:
    """A boolean key: true/false (Hydra also reads True, FALSE, ...), or one of `also`; else ConfigError."""
    value = OmegaConf.select(cfg, key, throw_on_missing=False, default=_MISSING)
    if value is _MISSING:
        return  # an optional key some configs leave out
    if not isinstance(value, bool) and value not in also:
        choices = ", ".join(["true", "false", *also])
        raise ConfigError(f"config key '{key}': expected {choices}, got {value!r}")
def shorten_schedule(cfg: DictConfig) -> str | None:
    """A warmup as long as the run (a preset's 30 warmup epochs with solver.max_epoch=1) is cut to half the run;
    returns the line to log, or None when the schedule fits."""
    warmup, max_epoch = cfg.solver.warmup_epochs, cfg.solver.max_epoch
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or isinstance(max_epoch, bool) \
            or not isinstance(max_epoch, int) or max_epoch < 1 or warmup < max_epoch:
        return None  # fits, or a wrong value that validate() reports
    with open_dict(cfg):
        cfg.solver.warmup_epochs = max_epoch / 2
    return (f"solver.warmup_epochs={warmup} is not shorter than solver.max_epoch={max_epoch}: warmup shortened to "
            f"{max_epoch / 2} epochs (half the run)")


def validate(cfg: DictConfig, world_size: int = 1, check_paths: bool = False) -> DictConfig:
    """Check keys and values that would otherwise fail deep inside training; raises ConfigError naming the key."""
    for key in BOOL_KEYS:
        _bool(cfg, key)
    _bool(cfg, "train.compile", also=("auto",))
    _choice(cfg, "device", ["auto", "cpu", "cuda"])
    _number(cfg, "seed", integer=True, min_value=0)
    _number(cfg, "num_shards", integer=True, min_value=1)
    _number(cfg, "log_period", integer=True, min_value=1)
    if not str(_get(cfg, "output_dir")):
        raise ConfigError("config key 'output_dir' is empty")

    _number(cfg, "model.num_classes", integer=True, min_value=1)
    _number(cfg, "model.dropout_rate", min_value=0.0, max_value=1.0)
    _choice(cfg, "model.attention", ["fused", "plain"])
    _choice(cfg, "model.loss_func", ["soft_cross_entropy", "cross_entropy"])

    _choice(cfg, "data.dataset", ["kinetics", "ssv2", "synthetic"])
    _choice(cfg, "data.decoder", ["decord", "pyav"])
    for key in ("data.num_frames", "data.sampling_rate", "data.train_crop_size", "data.test_crop_size",
                "data.num_sample"):
        _number(cfg, key, integer=True, min_value=1)
    _number(cfg, "data.target_fps", min_value=0, strict_min=True)
    scales = _list(cfg, "data.train_jitter_scales", 2, positive=True)
    if scales[0] > scales[1]:
        raise ConfigError(f"config key 'data.train_jitter_scales': expected [min, max], got {scales}")
    rel = _list(cfg, "data.train_jitter_scales_relative", positive=True)
    if rel and (len(rel) != 2 or rel[0] > rel[1] or rel[1] > 1.0):
        raise ConfigError(f"config key 'data.train_jitter_scales_relative': expected [] or [min, max<=1], got {rel}")
    _list(cfg, "data.mean", 3)
    _list(cfg, "data.std", 3, positive=True)
    _number(cfg, "data.max_bad_retries", integer=True, min_value=0)
    if check_paths and cfg.data.dataset == "synthetic" and str(cfg.data.path_to_data_dir):
        from mvit_video.data.synthetic import check_synthetic_root

        check_synthetic_root(str(cfg.data.path_to_data_dir))  # before anything is generated into a user's folder
    if check_paths and cfg.data.dataset != "synthetic":
        root = str(cfg.data.path_to_data_dir)
        if not root:
            raise ConfigError(f"config key 'data.path_to_data_dir' is empty: set it to the folder with the "
                              f"{cfg.data.dataset} list files (train.csv, val.csv, ...)")
        if not Path(root).is_dir():
            raise ConfigError(f"config key 'data.path_to_data_dir': {root} is not a directory")

    _number(cfg, "mixup.alpha", min_value=0.0)
    _number(cfg, "mixup.cutmix_alpha", min_value=0.0)
    _number(cfg, "mixup.prob", min_value=0.0, max_value=1.0)
    _number(cfg, "mixup.switch_prob", min_value=0.0, max_value=1.0)
    _number(cfg, "mixup.label_smooth_value", min_value=0.0, max_value=1.0)
    _number(cfg, "data_loader.num_workers", integer=True, min_value=0)

    batch = _number(cfg, "train.batch_size", integer=True, min_value=1)
    if batch % world_size != 0:
        raise ConfigError(f"config key 'train.batch_size': {batch} is not divisible by the world size {world_size} "
                          f"(it is the global batch; per process = batch_size / world size)")
    for key in ("train.eval_period", "train.checkpoint_period", "train.grad_accum_steps"):
        _number(cfg, key, integer=True, min_value=1)
    _choice(cfg, "train.mixed_precision", [True, False, "auto"])
    _choice(cfg, "train.amp_dtype", ["bf16", "fp16"])
    _number(cfg, "train.ema.decay", min_value=0.0, max_value=1.0, strict_min=True)
    ckpt = str(_get(cfg, "train.checkpoint_file_path"))
    if check_paths and ckpt and not Path(ckpt).is_file():
        raise ConfigError(f"config key 'train.checkpoint_file_path': {ckpt} does not exist")
    resume = str(cfg.train.get("resume_from") or "")
    if check_paths and resume and not Path(resume).is_file():
        raise ConfigError(f"config key 'train.resume_from': {resume} does not exist")

    _choice(cfg, "solver.optimizing_method", ["adamw", "sgd"])
    _choice(cfg, "solver.lr_policy", ["cosine"])
    base_lr = _number(cfg, "solver.base_lr", min_value=0.0, strict_min=True)
    end_lr = _number(cfg, "solver.cosine_end_lr", min_value=0.0)
    if end_lr >= base_lr:
        raise ConfigError(f"config key 'solver.cosine_end_lr': must be below solver.base_lr ({base_lr}), got {end_lr}")
    _number(cfg, "solver.warmup_start_lr", min_value=0.0)
    max_epoch = _number(cfg, "solver.max_epoch", integer=True, min_value=1)
    _number(cfg, "solver.warmup_epochs", min_value=0.0)
    note = shorten_schedule(cfg)
    if note:
        logger.info(note)
    _number(cfg, "solver.momentum", min_value=0.0, max_value=1.0)
    _number(cfg, "solver.weight_decay", min_value=0.0)
    if _get(cfg, "solver.clip_grad_l2norm") is not None:  # null (or 0) turns clipping off
        _number(cfg, "solver.clip_grad_l2norm", min_value=0.0)

    _number(cfg, "test.batch_size", integer=True, min_value=1)
    _choice(cfg, "test.split", ["train", "val", "test"])
    _number(cfg, "test.max_views_per_forward", integer=True, min_value=1)
    _number(cfg, "test.num_ensemble_views", integer=True, min_value=1)
    _choice(cfg, "test.num_spatial_crops", [1, 3])
    crop, short = int(cfg.data.test_crop_size), int(cfg.data.train_jitter_scales[0])
    if int(cfg.test.num_spatial_crops) == 1 and short < crop:
        # 1-crop testing resizes the short side to train_jitter_scales[0], then takes the center test_crop_size
        raise ConfigError(f"config key 'data.train_jitter_scales': its min {short} is the short side before the "
                          f"1-crop test view and must be >= data.test_crop_size ({crop})")
    return cfg
