"""Typed run settings: what the Hydra config becomes once, at the edge (mvit_video.config.build_config).

Each section is a frozen dataclass whose field names are the config keys (`data.num_frames` ->
`RunConfig.data.num_frames`); lists become tuples. data/, models/, engine/ and eval/ take these, never a
DictConfig. Field types and the bounds in each field's metadata are checked when a section is built from a
mapping (`from_mapping`), so a wrong value fails in one line that names its key. The defaults live in one place,
conf/config.yaml: these classes have none.

Also here, because the config names them and must be checked without torch: the dataset registry (`DATASETS`,
`register_dataset`: a name -> its builder and its `ClipProtocol`), and `CheckpointData`, the typed `data_config`
record a checkpoint carries, with the one copy of the defaults for what an older checkpoint does not record.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import traceback
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Union

from mvit_video.models.config import MViTConfig
from mvit_video.utils.errors import ConfigError, UserError

if TYPE_CHECKING:
    import torch


def _f(**rules: Any) -> Any:
    """A field with validation rules: min, max, strict_min, choices, length, positive. No default: the defaults
    live in conf/config.yaml only."""
    return field(metadata=rules)


# ------------------------------------------------------------------------------------------- datasets

@dataclass(frozen=True)
class ClipProtocol:
    """How a dataset's clips are sampled and its test views shaped beyond the data.* / test.* values (REFERENCE
    §4-5, §8): what `data.clips.ClipSpec.for_dataset` applies. The defaults are Kinetics' (PySlowFast's
    slowfast/datasets/kinetics.py)."""

    segment_sampling: bool = False  # one frame from each of num_frames segments (data.sampling_rate unused)
    short_side_is_crop: bool = False  # test short side = the crop; else the crop with 3 crops, jitter min with 1
    one_crop_index: int = 1  # the crop of a 1-crop test view: 1 = center, 0 = left/top
    frame_grid: bool = False  # data.frame_grid_fps resamples the videos by timestamp; else each keeps its rate
    frame_folders: bool = False  # a list path that is a folder of JPEG frames is one video
    # What a checkpoint that does not record them (an older one) is tested with: the paper's test views (K, S)
    # and frame grid. tests/data/test_registry.py keeps them equal to conf/test/*.yaml and conf/data/ssv2.yaml.
    paper_views: tuple[int, int] = (5, 1)
    paper_frame_grid_fps: float = 0.0


# PySlowFast's slowfast/datasets/ssv2.py: segment sampling of JPEGs extracted at 30 fps (a folder per video), test
# short side = TEST_CROP_SIZE, the 1-crop view the left/top one; the paper tests 1 clip x 3 crops.
SSV2_PROTOCOL = ClipProtocol(segment_sampling=True, short_side_is_crop=True, one_crop_index=0, frame_grid=True,
                             frame_folders=True, paper_views=(1, 3), paper_frame_grid_fps=30.0)


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset. `builder(data, aug, spec, split, *, augment_on_device) -> data.base.VideoDataset`
    builds one split (data.build_dataset calls it with the run's DataConfig, AugConfig and the ClipSpec of
    `protocol`); a string "module:function" names it without importing it (see `register_dataset`)."""

    name: str
    builder: Union[Callable[..., Any], str]
    protocol: ClipProtocol

    def load_builder(self) -> Callable[..., Any]:
        """The builder function (imported now when given as "module:function")."""
        if callable(self.builder):
            return self.builder
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)


# data.dataset -> its entry: the one place a dataset is added. DataConfig.dataset accepts exactly these names.
DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, builder: Union[Callable[..., Any], str],
                     protocol: ClipProtocol = ClipProtocol()) -> DatasetEntry:
    """Make `data.dataset=name` a dataset: its builder (see DatasetEntry; data.base.list_dataset assembles a
    VideoDataset from paths and labels) and its clip protocol. A conf/data/<name>.yaml group is optional (preset
    values); `data=kinetics data.dataset=name` works without one. The built-in builders are named by strings:
    this module is read to check a config, which must not import torch (`--help`, config errors)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"dataset name {name!r}: lower case letters, digits and _ only")
    if name in DATASETS:
        raise ValueError(f"dataset {name!r} is already registered")
    if not (callable(builder) or (isinstance(builder, str) and ":" in builder)):
        raise ValueError(f"dataset {name!r}: builder must be a function or 'module:function', got {builder!r}")
    DATASETS[name] = DatasetEntry(name, builder, protocol)
    return DATASETS[name]


def import_custom(modules: Any) -> None:
    """Import the modules of config key custom_imports (mmaction2's name) for what importing them registers, e.g.
    a dataset (`register_dataset`). Every command calls it while building its settings (config.build_config), in
    every process (torchrun, SLURM, submitit), and Predictor for a checkpoint's dataset, so a dataset registered
    this way is known everywhere. One-line ConfigError naming the key, the module, and for a failing module the
    file and line."""
    if modules is None:
        return
    if isinstance(modules, str) or not isinstance(modules, (list, tuple)) or \
            not all(isinstance(m, str) and m for m in modules):
        raise ConfigError(f"config key 'custom_imports': expected a list of module names, got {modules!r}")
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 -- the user's module: any failure is theirs to see, in one line
            raise ConfigError(f"config key 'custom_imports': importing {name!r} failed{_where(e, name)}: "
                              f"{type(e).__name__}: {e}") from None


def _where(error: Exception, module: str) -> str:
    """" at FILE:LINE" of the user's code that failed to import, "" when the module itself was not found."""
    if isinstance(error, ModuleNotFoundError) and error.name == module:
        return ""
    if isinstance(error, SyntaxError) and error.filename:
        return f" at {error.filename}:{error.lineno}"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<frozen")]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def dataset_entry(name: str) -> DatasetEntry:
    """The registered dataset `name` (ConfigError naming data.dataset and the registered names otherwise)."""
    if name not in DATASETS:
        raise ConfigError(f"config key 'data.dataset': unknown dataset {name!r}; registered: {', '.join(DATASETS)} "
                          f"(mvit_video.settings.register_dataset adds one; config key custom_imports names the "
                          f"module that calls it)")
    return DATASETS[name]


def clip_protocol(name: str) -> ClipProtocol:
    """The clip protocol of dataset `name`. A name that is not registered (a converted PySlowFast checkpoint
    names its own, e.g. charades) is sampled as Kinetics, the default protocol."""
    entry = DATASETS.get(name)
    return entry.protocol if entry is not None else ClipProtocol()


register_dataset("kinetics", "mvit_video.data.kinetics:build_kinetics")  # any list of `path label` lines
register_dataset("ssv2", "mvit_video.data.ssv2:build_ssv2", SSV2_PROTOCOL)
register_dataset("synthetic", "mvit_video.data.kinetics:build_synthetic")  # generated, then read as Kinetics


@dataclass(frozen=True)
class SyntheticConfig:
    """data.synthetic.*: the generated first-run dataset (cached per settings)."""

    num_classes: int = _f(min=2, max=6)  # moving right/left/down/up, growing, shrinking
    train_per_class: int = _f(min=1)
    val_per_class: int = _f(min=1)
    test_per_class: int = _f(min=1)
    num_frames: int = _f(min=1)
    height: int = _f(min=16)
    width: int = _f(min=16)
    fps: float = _f(min=0.0, strict_min=True)
    seed: int = _f(min=0)


@dataclass(frozen=True)
class DataConfig:
    """data.*: which videos, how clips are sampled, sized and normalised."""

    dataset: str = _f(choices=DATASETS)  # the registered names, as they are when a config is checked
    path_to_data_dir: str
    path_prefix: str
    train_list: str
    val_list: str
    test_list: str
    path_label_separator: str
    decoder: str = _f(choices=("decord", "pyav"))
    num_frames: int = _f(min=1)
    sampling_rate: int = _f(min=1)
    target_fps: float = _f(min=0.0, strict_min=True)
    train_jitter_scales: tuple[int, ...] = _f(length=2, positive=True)
    train_jitter_scales_relative: tuple[float, ...] = _f(positive=True)
    train_jitter_aspect_relative: tuple[float, ...] = _f(positive=True)
    train_crop_size: int = _f(min=1)
    test_crop_size: int = _f(min=1)
    use_offset_sampling: bool
    inv_uniform_sample: bool
    random_flip: bool
    mean: tuple[float, ...] = _f(length=3)
    std: tuple[float, ...] = _f(length=3, positive=True)
    num_sample: int = _f(min=1)
    frame_grid_fps: float = _f(min=0.0)
    max_bad_retries: int = _f(min=0)
    synthetic: SyntheticConfig

    def list_file(self, split: str) -> str:
        """data.{split}_list as set ('' when the split's default list file is meant)."""
        return {"train": self.train_list, "val": self.val_list, "test": self.test_list}[split]


@dataclass(frozen=True)
class AugConfig:
    """aug.*: RandAugment and random erasing of training clips."""

    enable: bool
    aa_type: str
    interpolation: str = _f(choices=("bicubic", "bilinear", "nearest"))
    re_prob: float = _f(min=0.0, max=1.0)
    re_mode: str = _f(choices=("pixel",))  # timm's const/rand modes are not implemented
    re_count: int = _f(min=1)


@dataclass(frozen=True)
class MixupConfig:
    """mixup.*: MixUp/CutMix and label smoothing."""

    enable: bool
    alpha: float = _f(min=0.0)
    cutmix_alpha: float = _f(min=0.0)
    prob: float = _f(min=0.0, max=1.0)
    switch_prob: float = _f(min=0.0, max=1.0)
    label_smooth_value: float = _f(min=0.0, max=1.0)


@dataclass(frozen=True)
class LoaderConfig:
    """data_loader.*: worker processes and decoding threads."""

    num_workers: int = _f(min=0)
    pin_memory: bool
    persistent_workers: bool
    decoder_threads: int = _f(min=0)
    # where training clips are augmented; the one default outside config.yaml, so that loaders built in code for
    # evaluation (extract.py), which never augment, need not name it
    augment_on: str = field(default="auto", metadata={"choices": ("auto", "workers", "device")})


@dataclass(frozen=True)
class EmaConfig:
    """train.ema.*: an exponential moving average of the weights."""

    enable: bool
    decay: float = _f(min=0.0, max=1.0, strict_min=True)


@dataclass(frozen=True)
class TrainConfig:
    """train.*: batch, periods, resume, precision and compilation."""

    batch_size: int = _f(min=1)  # global, over all processes (as PySlowFast)
    eval_period: int = _f(min=1)
    checkpoint_period: int = _f(min=1)
    auto_resume: bool
    checkpoint_file_path: str
    resume_from: str
    mixed_precision: Union[bool, str] = _f(choices=(True, False, "auto"))
    amp_dtype: str = _f(choices=("bf16", "fp16"))
    grad_accum_steps: int = _f(min=1)
    compile: Union[bool, str] = _f(choices=(True, False, "auto"))
    compile_mode: str = _f(choices=("regional", "full", "nested"))  # regional: each block compiled (engine/compile.py)
    peak_tflops: Union[float, None] = _f(min=0.0, strict_min=True)
    stop_grace_s: Union[float, None] = _f(min=0.0)  # after a stop signal, end the process at the latest then
    keep_checkpoints: Union[int, None] = _f(min=0)  # latest epoch checkpoints kept; 0 / None: all
    save_best: bool  # checkpoints/checkpoint_best.pyth at each new best val top-1
    reinit_head: bool  # fine-tuning: a new classifier even when the checkpoint's has the right size
    ema: EmaConfig


@dataclass(frozen=True)
class SolverConfig:
    """solver.*: optimizer and the cosine LR schedule with linear warmup."""

    optimizing_method: str = _f(choices=("adamw", "sgd"))
    base_lr: float = _f(min=0.0, strict_min=True)
    base_lr_scale_num_shards: bool
    cosine_end_lr: float = _f(min=0.0)
    cosine_after_warmup: bool
    warmup_start_lr: float = _f(min=0.0)
    warmup_epochs: float = _f(min=0.0)
    max_epoch: int = _f(min=1)
    momentum: float = _f(min=0.0, max=1.0)
    nesterov: bool
    weight_decay: float = _f(min=0.0)
    zero_wd_1d_param: bool
    zero_decay_pos_cls: bool
    clip_grad_l2norm: Union[float, None] = _f(min=0.0)  # null or 0: no clipping


@dataclass(frozen=True)
class TestConfig:
    """test.*: the multi-view test (K temporal clips x S spatial crops per video)."""

    enable: bool
    split: str = _f(choices=("train", "val", "test"))
    batch_size: int = _f(min=1)
    checkpoint: str
    num_ensemble_views: int = _f(min=1)
    num_spatial_crops: int = _f(choices=(1, 3))
    max_views_per_forward: int = _f(min=1)
    use_ema: bool
    allow_class_subset: bool  # evaluate a list whose classes are a subset of the checkpoint's


@dataclass(frozen=True)
class RunConfig:
    """One run's whole configuration, typed; `yaml` is the resolved Hydra config (stored in checkpoints).
    `model` is built from model.*, mvit.* and data.num_frames/train_crop_size; `loss_func` is model.loss_func."""

    model: MViTConfig
    name: str
    output_dir: str
    seed: int = _f(min=0)
    device: str = _f(choices=("auto", "cpu", "cuda"))
    num_shards: int = _f(min=1)
    log_period: int = _f(min=1)
    log_period_s: float = _f(min=0.0, strict_min=True)
    loss_func: str = _f(choices=("soft_cross_entropy", "cross_entropy"))
    custom_imports: tuple[str, ...] = _f()  # imported before the config is checked (import_custom)
    data: DataConfig
    aug: AugConfig
    mixup: MixupConfig
    data_loader: LoaderConfig
    train: TrainConfig
    solver: SolverConfig
    test: TestConfig
    yaml: str


def __getattr__(name: str) -> Any:
    # AMP_DTYPES (train.amp_dtype -> the autocast dtype, the one map of these names) is built on first use, so
    # that composing and checking a config (config errors, --help) does not import torch.
    if name == "AMP_DTYPES":
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def autocast_dtype(run: RunConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run on `device`, or None (full precision): train.mixed_precision auto means on with
    CUDA, off on CPU; training, validation and the test all use it."""
    mixed = run.train.mixed_precision
    use_amp = mixed is True or (mixed == "auto" and device.type == "cuda")
    return __getattr__("AMP_DTYPES")[run.train.amp_dtype] if use_amp else None


# MViTConfig fields that are not mvit.* keys, and the config key each comes from (RunConfig.model).
MODEL_FIELD_KEYS = {"num_classes": "model.num_classes", "dropout_rate": "model.dropout_rate",
                    "act_checkpoint": "model.act_checkpoint", "attention": "model.attention",
                    "num_frames": "data.num_frames", "crop_size": "data.train_crop_size"}


def model_key(field_name: str) -> str:
    """The config key of an MViTConfig field, as users write it (mvit.depth, model.num_classes, ...)."""
    return MODEL_FIELD_KEYS.get(field_name, f"mvit.{field_name}")


# ------------------------------------------------------------------------------------------- checkpoint data

# The fields of CheckpointData that are test.<key> values; the others are data.<key> values.
CHECKPOINT_TEST_KEYS = ("num_ensemble_views", "num_spatial_crops")


@dataclass(frozen=True)
class CheckpointData:
    """A checkpoint's `data_config`: how its inputs were sampled, sized and normalised (data.<key>) and the
    multi-view test it was trained for (test.<key>). Written into checkpoints as a plain dict (`to_dict`, keys in
    field order), read back with `from_dict`.

    An older checkpoint may lack keys (or the whole data_config). The defaults for them live here and only here:
    the field defaults, and for the frame grid and the test views the dataset's ClipProtocol (the paper's SSv2
    1x3 at 30 fps, else 5x1 at the videos' own rate), filled in on construction. Keys with no sensible default
    (num_frames, sampling_rate, target_fps, the crops, mean, std) stay None: `lacking` names them. `recorded`
    holds the keys the checkpoint itself gave, so that evaluate adopts only those (predict.clip_settings).
    """

    num_frames: Union[int, None] = None
    sampling_rate: Union[int, None] = None
    target_fps: Union[float, None] = None
    train_crop_size: Union[int, None] = None
    test_crop_size: Union[int, None] = None
    mean: Union[tuple[float, ...], None] = None
    std: Union[tuple[float, ...], None] = None
    dataset: str = "kinetics"
    use_offset_sampling: bool = True
    train_jitter_scales: tuple[int, ...] = ()  # (): not recorded (see one_crop_short_side)
    frame_grid_fps: Union[float, None] = None  # None: the dataset protocol's
    num_ensemble_views: Union[int, None] = None  # None (either view count): the dataset protocol's paper views
    num_spatial_crops: Union[int, None] = None
    recorded: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        protocol = clip_protocol(self.dataset)
        if self.frame_grid_fps is None:
            object.__setattr__(self, "frame_grid_fps", protocol.paper_frame_grid_fps)
        if self.num_ensemble_views is None or self.num_spatial_crops is None:  # both recorded, or the paper's
            object.__setattr__(self, "num_ensemble_views", protocol.paper_views[0])
            object.__setattr__(self, "num_spatial_crops", protocol.paper_views[1])

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The data_config keys, in the order a checkpoint holds them."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "recorded")

    @classmethod
    def from_run(cls, run: RunConfig) -> "CheckpointData":
        """What a checkpoint of `run` records: every key, from run.data and run.test."""
        values = {key: getattr(run.test if key in CHECKPOINT_TEST_KEYS else run.data, key) for key in cls.keys()}
        return cls(**values, recorded=frozenset(values))

    @classmethod
    def from_dict(cls, values: "Mapping[str, Any] | CheckpointData | None",
                  source: str = "data_config") -> "CheckpointData":
        """The record of a checkpoint's data_config (None or {}: an old checkpoint without one). Keys of newer
        versions are ignored; a value of the wrong type is a UserError naming `source` and the key."""
        if isinstance(values, CheckpointData):
            return values
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise UserError(f"{source}: data_config is a {type(values).__name__}, not a mapping")
        hints = typing.get_type_hints(cls)
        given: dict[str, Any] = {}
        for key in cls.keys():
            if key not in values:
                continue
            kind = hints[key]
            if typing.get_origin(kind) is Union:  # X | None: None is what a missing key gives, not a value
                kind = next(k for k in typing.get_args(kind) if k is not type(None))
            ok, value = _as(kind, values[key])
            if not ok:
                raise UserError(f"{source}: data_config.{key} is {values[key]!r}, expected {_type_name(kind)}")
            given[key] = value
        if not all(key in given for key in CHECKPOINT_TEST_KEYS):  # one view count alone is not a protocol
            given = {k: v for k, v in given.items() if k not in CHECKPOINT_TEST_KEYS}
        return cls(**given, recorded=frozenset(given))

    def to_dict(self) -> dict[str, Any]:
        """The recorded keys as plain python (tuples as lists, so torch.load(weights_only=True) reads them)."""
        out = {}
        for key in self.keys():
            if key in self.recorded:
                value = getattr(self, key)
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def one_crop_short_side(self, crop: int) -> int:
        """train_jitter_scales[0], the short side of a Kinetics-style 1-crop test view; `crop` when not recorded."""
        return int(self.train_jitter_scales[0]) if self.train_jitter_scales else int(crop)

    def lacking(self, keys: typing.Iterable[str]) -> list[str]:
        """Those of `keys` the checkpoint did not record and that have no default."""
        return [key for key in keys if getattr(self, key) is None]


# ------------------------------------------------------------------------------------------- from a mapping

def from_mapping(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    """Build section `cls` from a plain mapping (keys = field names), checking every value against its field's
    type and rules; `prefix` is the section's config key ("data") for the error messages. A missing or unknown
    key is a ConfigError."""
    hints = typing.get_type_hints(cls)
    dot = f"{prefix}." if prefix else ""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{dot}{unknown[0]}'")
    missing = [name for name in fields if name not in values]
    if missing:
        raise ConfigError(f"config key '{dot}{missing[0]}' is missing (every key is listed in conf/config.yaml)")
    kwargs = {}
    for name, value in values.items():
        key = f"{dot}{name}"
        kind = hints[name]
        if dataclasses.is_dataclass(kind) and isinstance(value, kind):
            kwargs[name] = value  # a section built by the caller (RunConfig.model)
        elif dataclasses.is_dataclass(kind):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{key}': expected a section of keys, got {value!r}")
            kwargs[name] = from_mapping(kind, value, key)
        else:
            kwargs[name] = _check_value(key, _convert(key, kind, value), fields[name].metadata)
    return cls(**kwargs)


def _convert(key: str, kind: Any, value: Any) -> Any:
    """`value` as type `kind` (bool, int, float, str, tuple[X, ...], unions of those); ConfigError otherwise."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (Union, types.UnionType) else (kind,)
    for option in options:
        ok, converted = _as(option, value)
        if ok:
            return converted
    expected = " or ".join(_type_name(o) for o in options)
    raise ConfigError(f"config key '{key}': expected {expected}, got {value!r}")


def _as(kind: Any, value: Any) -> tuple[bool, Any]:
    if kind is type(None):
        return value is None, None
    if kind is bool:  # only true/false: a string such as "no" would otherwise read as true
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind is str:
        return isinstance(value, str), value
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        item = typing.get_args(kind)[0]
        converted = [_as(item, v) for v in value]
        return all(ok for ok, _ in converted), tuple(v for _, v in converted)
    raise TypeError(f"unsupported settings type {kind!r}")


def _type_name(kind: Any) -> str:
    if kind is type(None):
        return "null"
    if typing.get_origin(kind) is tuple:
        return f"a list of {_type_name(typing.get_args(kind)[0])}s"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(kind, str(kind))


def _check_value(key: str, value: Any, rules: Mapping[str, Any]) -> Any:
    """Apply a field's rules (choices, min/max, strict_min, length, positive) to `value`. Every number must be
    finite: nan compares false with any bound and would pass min/max, then fail deep inside (the optimizer)."""
    numbers = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise ConfigError(f"config key '{key}': expected a finite number, got "
                          f"{list(value) if isinstance(value, tuple) else value!r}")
    if "choices" in rules and not any(value == c and type(value) is type(c) for c in rules["choices"]):
        raise ConfigError(f"config key '{key}': expected one of {', '.join(_show(c) for c in rules['choices'])}, "
                          f"got {value!r}")
    if isinstance(value, tuple):
        if "length" in rules and len(value) != rules["length"]:
            raise ConfigError(f"config key '{key}': expected {rules['length']} values, got {list(value)}")
        if rules.get("positive") and any(v <= 0 for v in value):
            raise ConfigError(f"config key '{key}': expected positive numbers, got {list(value)}")
        return value
    if value is None or isinstance(value, (bool, str)):
        return value
    low, high = rules.get("min"), rules.get("max")
    if low is not None and (value < low or (rules.get("strict_min") and value == low)):
        raise ConfigError(f"config key '{key}': expected {'>' if rules.get('strict_min') else '>='} {low}, "
                          f"got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"config key '{key}': expected <= {high}, got {value!r}")
    return value


def _show(choice: Any) -> str:
    return str(choice).lower() if isinstance(choice, bool) else str(choice)
