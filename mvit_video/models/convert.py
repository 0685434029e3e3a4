"""Weights in: PySlowFast and torchvision MViTv2 checkpoints mapped onto mvit_video's MViT.

One explicit function per source (like timm's `checkpoint_filter_fn`):
- PySlowFast: `config_from_slowfast_yaml` reads the MVIT/DATA/MODEL sections of its yaml config (with
  PySlowFast's defaults underneath) into an `MViTConfig`; `from_slowfast` checks the state dict key by key.
  Our parameter names are PySlowFast's, so the mapping is the identity once wrappers are stripped.
- torchvision: `torchvision_config` is `mvit_v2_s` as an `MViTConfig`; `from_torchvision` renames its keys.
- any of these, ours or a plain state dict: `to_mvit_state_dict` tells them apart and returns our state dict
  (what fine-tuning loads, mvit_video.checkpoint.load_pretrained); `strip_wrapper_prefixes` drops the names that
  DDP / torch.compile / activation-checkpoint wrappers add.
Nothing is ever dropped silently: a key that is not understood stops the conversion with its name.

Our checkpoint format sits above this module (mvit_video.checkpoint imports it, never the other way round):
`named_weights` hands the converted pieces to mvit_video.checkpoint.named_checkpoint, which makes a checkpoint.
"""

from __future__ import annotations

import ast
import copy
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from mvit_video.models.config import MViTConfig, block_configs, stage_lists
from mvit_video.utils.deprecation import moved
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

# Prefixes that wrappers add to parameter names: DDP, torch.compile, FSDP/activation-checkpoint wrappers.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_WRAPPER_INFIXES = ("_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")


def strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop `module.`/`_orig_mod.` prefixes and `_checkpoint_wrapped_module.` infixes added by wrappers."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        for infix in _WRAPPER_INFIXES:
            key = key.replace(infix, "")
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------------------------
# PySlowFast config
# ----------------------------------------------------------------------------------------------------------------

# PySlowFast's defaults (slowfast/config/defaults.py) for the keys that decide the network and its inputs: a yaml
# only lists what differs from these, so they must sit underneath it.
SLOWFAST_DEFAULTS: dict[str, dict[str, Any]] = {
    "MVIT": {
        "MODE": "conv",
        "POOL_FIRST": False,
        "CLS_EMBED_ON": True,
        "PATCH_KERNEL": [3, 7, 7],
        "PATCH_STRIDE": [2, 4, 4],
        "PATCH_PADDING": [2, 4, 4],
        "PATCH_2D": False,
        "EMBED_DIM": 96,
        "NUM_HEADS": 1,
        "MLP_RATIO": 4.0,
        "QKV_BIAS": True,
        "DROPPATH_RATE": 0.1,
        "LAYER_SCALE_INIT_VALUE": 0.0,
        "DEPTH": 16,
        "NORM": "layernorm",
        "DIM_MUL": [],
        "HEAD_MUL": [],
        "POOL_KV_STRIDE": [],
        "POOL_KV_STRIDE_ADAPTIVE": None,
        "POOL_Q_STRIDE": [],
        "POOL_KVQ_KERNEL": None,
        "ZERO_DECAY_POS_CLS": True,
        "NORM_STEM": False,
        "SEP_POS_EMBED": False,
        "DROPOUT_RATE": 0.0,
        "USE_ABS_POS": True,
        "REL_POS_SPATIAL": False,
        "REL_POS_TEMPORAL": False,
        "REL_POS_ZERO_INIT": False,
        "RESIDUAL_POOLING": False,
        "DIM_MUL_IN_ATT": False,
        "SEPARATE_QKV": False,
        "HEAD_INIT_SCALE": 1.0,
        "USE_MEAN_POOLING": False,
        "USE_FIXED_SINCOS_POS": False,
        "REV": {"ENABLE": False},
    },
    "MODEL": {
        "ARCH": "slowfast",
        "MODEL_NAME": "SlowFast",
        "NUM_CLASSES": 400,
        "DROPOUT_RATE": 0.5,
        "ACT_CHECKPOINT": False,
        "HEAD_ACT": "softmax",
    },
    "DATA": {
        "NUM_FRAMES": 8,
        "SAMPLING_RATE": 8,
        "TARGET_FPS": 30,
        "TRAIN_CROP_SIZE": 224,
        "TEST_CROP_SIZE": 256,
        "MEAN": [0.45, 0.45, 0.45],
        "STD": [0.225, 0.225, 0.225],
        "USE_OFFSET_SAMPLING": False,
        "TRAIN_JITTER_SCALES": [256, 320],
        "INPUT_CHANNEL_NUM": [3, 3],
        "REVERSE_INPUT_CHANNEL": False,
    },
    "TRAIN": {"DATASET": "kinetics"},
    "TEST": {"DATASET": "kinetics"},
    "DETECTION": {"ENABLE": False},
}

# MVIT keys that are MViTConfig fields of the same name (lower case).
_MVIT_FIELDS = (
    "MODE", "POOL_FIRST", "CLS_EMBED_ON", "PATCH_KERNEL", "PATCH_STRIDE", "PATCH_PADDING", "EMBED_DIM", "NUM_HEADS",
    "MLP_RATIO", "QKV_BIAS", "DROPPATH_RATE", "DEPTH", "DIM_MUL", "HEAD_MUL", "POOL_KV_STRIDE",
    "POOL_KV_STRIDE_ADAPTIVE", "POOL_Q_STRIDE", "POOL_KVQ_KERNEL", "NORM_STEM", "SEP_POS_EMBED", "USE_ABS_POS",
    "REL_POS_SPATIAL", "REL_POS_TEMPORAL", "REL_POS_ZERO_INIT", "RESIDUAL_POOLING", "DIM_MUL_IN_ATT", "SEPARATE_QKV",
    "USE_MEAN_POOLING",
)  # fmt: skip
# MVIT keys our network implements only at one value (the value every MViTv2 preset uses).
_MVIT_FIXED = {
    "PATCH_2D": (False, "2-D patch embedding (image MViT)"),
    "LAYER_SCALE_INIT_VALUE": (0.0, "layer scale (gamma_1/gamma_2)"),
    "NORM": ("layernorm", "a norm other than layernorm"),
    "USE_FIXED_SINCOS_POS": (False, "fixed sin-cos position embeddings"),
}
# MVIT keys that only matter for training or initialisation: the converted weights do not depend on them.
_MVIT_HARMLESS = {
    "ZERO_DECAY_POS_CLS": "weight decay grouping (solver.zero_decay_pos_cls)",
    "HEAD_INIT_SCALE": "head initialisation",
    "DROPOUT_RATE": "dropout inside the backbone (training only)",
}


def _decode(value: Any) -> Any:
    """yacs' value decoding: a string that is a python literal ("(3, 7, 7)", "1e-6") becomes that literal."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    if isinstance(value, tuple):
        return [_decode(v) if isinstance(v, tuple) else v for v in value]
    return value


def _merge(base: dict, new: Mapping) -> dict:
    """Recursively merge `new` into a copy of `base` (later values win, as fvcore's merge_from_file)."""
    out = copy.deepcopy(base)
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = _merge({}, value)
        else:
            out[key] = _decode(value)
    return out


def parse_slowfast_yaml(
    yaml_text: str, *, source: str = "PySlowFast config", base_dir: str | os.PathLike | None = None, _depth: int = 0
) -> dict:
    """Parse PySlowFast yaml text into nested dicts (`_BASE_` files merged underneath, literals decoded).

    A key written twice keeps its later value (PyYAML's behaviour, and so PySlowFast's)."""
    try:
        data = yaml.safe_load(yaml_text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{source}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a YAML mapping of sections (MVIT:, DATA:, MODEL:, ...)")
    merged: dict = {}
    base = data.pop("_BASE_", None)
    if base is not None:
        if _depth > 10:
            raise UserError(f"{source}: _BASE_ nesting deeper than 10 (a cycle?)")
        base_path = Path(os.path.expanduser(str(base)))
        if not base_path.is_absolute():
            if base_dir is None:
                raise UserError(
                    f"{source}: has _BASE_: {base} but its directory is unknown; pass the yaml file with --config"
                )
            base_path = Path(base_dir) / base_path
        if not base_path.is_file():
            raise UserError(f"{source}: _BASE_ file {base_path} not found")
        merged = parse_slowfast_yaml(
            base_path.read_text(encoding="utf-8"), source=str(base_path), base_dir=base_path.parent, _depth=_depth + 1
        )
    return _merge(merged, data)


def _section(cfg: Mapping, name: str, source: str) -> dict:
    """cfg[name] over PySlowFast's defaults for that section."""
    value = cfg.get(name) or {}
    if not isinstance(value, Mapping):
        raise UserError(f"{source}: section {name} is not a mapping")
    return _merge(SLOWFAST_DEFAULTS.get(name, {}), value)


def _is_off(value: Any) -> bool:
    """True for values that switch an option off (False, 0, None, empty)."""
    return value is None or value is False or value == 0 or value == "" or value == [] or value == {}


def config_from_slowfast_yaml(
    yaml_text: str,
    num_frames: int | None = None,
    crop_size: int | None = None,
    *,
    source: str = "PySlowFast config",
    base_dir: str | os.PathLike | None = None,
) -> tuple[MViTConfig, dict]:
    """(MViTConfig, data_config) from a PySlowFast MViTv2 yaml (the file shipped with a .pyth or its `cfg` string).

    num_frames/crop_size override DATA.NUM_FRAMES/TRAIN_CROP_SIZE: the input size the weights were built for."""
    cfg = parse_slowfast_yaml(yaml_text, source=source, base_dir=base_dir)
    mvit = _section(cfg, "MVIT", source)
    model = _section(cfg, "MODEL", source)
    data = _section(cfg, "DATA", source)

    if str(model["MODEL_NAME"]) != "MViT":
        raise UserError(
            f"{source}: MODEL.MODEL_NAME is {model['MODEL_NAME']!r}, expected 'MViT' (only MViT configs convert)"
        )
    if _section(cfg, "DETECTION", source)["ENABLE"]:
        raise UserError(f"{source}: DETECTION.ENABLE is True; detection heads are not supported")
    if list(data["INPUT_CHANNEL_NUM"])[:1] != [3] or len(list(data["INPUT_CHANNEL_NUM"])) not in (1, 2):
        raise UserError(f"{source}: DATA.INPUT_CHANNEL_NUM {data['INPUT_CHANNEL_NUM']} is not a single RGB pathway")

    values: dict[str, Any] = {}
    for key, value in mvit.items():
        if key in _MVIT_FIELDS:
            values[key.lower()] = value
        elif key in _MVIT_FIXED:
            want, what = _MVIT_FIXED[key]
            if value != want:
                raise UserError(f"{source}: MVIT.{key}={value!r} ({what}) is not supported; only {want!r} is")
        elif key in _MVIT_HARMLESS:
            if value != SLOWFAST_DEFAULTS["MVIT"][key]:
                logger.info("%s: ignoring MVIT.%s=%r (%s)", source, key, value, _MVIT_HARMLESS[key])
        elif key == "REV":
            if isinstance(value, Mapping) and value.get("ENABLE"):
                raise UserError(f"{source}: MVIT.REV.ENABLE is True; reversible MViT is not supported")
        elif _is_off(value):
            logger.warning("%s: unknown key MVIT.%s=%r ignored (it is switched off)", source, key, value)
        else:
            raise UserError(
                f"{source}: unknown key MVIT.{key}={value!r}; it may change the network, so it is not converted"
            )
    # PySlowFast leaves POOL_KV_STRIDE None in some versions; ours is a list.
    if values.get("pool_kv_stride") is None:
        values["pool_kv_stride"] = []
    if model.get("HEAD_ACT", "softmax") != "softmax":
        logger.info("%s: MODEL.HEAD_ACT=%r ignored; the model returns logits", source, model["HEAD_ACT"])

    def get(section: str, table: dict, key: str, kind: Any) -> Any:
        """table[key] as `kind` (int, float, bool, or [int]/[float] for lists), else a UserError naming the key."""
        value = table[key]
        try:
            return [kind[0](v) for v in value] if isinstance(kind, list) else kind(value)
        except (TypeError, ValueError):
            raise UserError(f"{source}: {section}.{key}={value!r} is not a valid value") from None

    values["num_classes"] = get("MODEL", model, "NUM_CLASSES", int)
    values["dropout_rate"] = get("MODEL", model, "DROPOUT_RATE", float)
    values["act_checkpoint"] = get("MODEL", model, "ACT_CHECKPOINT", bool)
    values["num_frames"] = num_frames if num_frames is not None else get("DATA", data, "NUM_FRAMES", int)
    values["crop_size"] = crop_size if crop_size is not None else get("DATA", data, "TRAIN_CROP_SIZE", int)
    config = _make_config(values, source)

    dataset = _slowfast_dataset(cfg)
    mean, std = get("DATA", data, "MEAN", [float]), get("DATA", data, "STD", [float])
    if dataset in _BGR_DATASETS:
        # its loader normalised BGR frames with these lists: in RGB order the statistics are the lists reversed
        mean, std = mean[::-1], std[::-1]
    data_config = {
        "num_frames": config.num_frames,
        "sampling_rate": get("DATA", data, "SAMPLING_RATE", int),
        "target_fps": get("DATA", data, "TARGET_FPS", int),
        "train_crop_size": config.crop_size,
        "test_crop_size": crop_size if crop_size is not None else get("DATA", data, "TEST_CROP_SIZE", int),
        "mean": mean,
        "std": std,
        "dataset": dataset,
        "use_offset_sampling": get("DATA", data, "USE_OFFSET_SAMPLING", bool),
        "train_jitter_scales": get("DATA", data, "TRAIN_JITTER_SCALES", [int]),
    }
    return config, data_config


# PySlowFast datasets whose loader reads frames with OpenCV, so in BGR order: SSv2 (its JPEG frames,
# slowfast/datasets/ssv2.py retry_load_images). Kinetics decodes to RGB.
_BGR_DATASETS = {"ssv2"}


def _slowfast_dataset(cfg: Mapping) -> str:
    """TEST.DATASET (else TRAIN.DATASET, else kinetics), lower case."""
    name = (cfg.get("TEST") or {}).get("DATASET") or (cfg.get("TRAIN") or {}).get("DATASET") or "kinetics"
    return str(name).lower()


def slowfast_input_is_bgr(
    yaml_text: str, *, source: str = "PySlowFast config", base_dir: str | os.PathLike | None = None
) -> bool:
    """Whether the PySlowFast network took its input channels in BGR order: frames read as BGR (SSv2) or as RGB
    (Kinetics), then reversed when DATA.REVERSE_INPUT_CHANNEL. SSv2 with REVERSE_INPUT_CHANNEL (its MViTv2
    configs) therefore fed RGB. from_slowfast(..., reverse_input_channel=True) folds a BGR input into the weights;
    the statistics of a BGR-read dataset are reversed in config_from_slowfast_yaml's data_config."""
    cfg = parse_slowfast_yaml(yaml_text, source=source, base_dir=base_dir)
    reverse = bool(_section(cfg, "DATA", source)["REVERSE_INPUT_CHANNEL"])
    return (_slowfast_dataset(cfg) in _BGR_DATASETS) != reverse


def _make_config(values: dict[str, Any], source: str) -> MViTConfig:
    """MViTConfig(**values) with a ConfigError re-worded to name the PySlowFast key."""
    try:
        return MViTConfig.from_dict(values)
    except ConfigError as e:
        msg = str(e)
        key = msg.split(":", 1)[0].strip()
        section = {"num_classes": "MODEL", "dropout_rate": "MODEL", "act_checkpoint": "MODEL"}.get(key, "MVIT")
        if key == "num_frames":
            section, key = "DATA", "num_frames"
        if key == "crop_size":
            section, key = "DATA", "train_crop_size"
        if key in values:
            raise UserError(f"{source}: {section}.{key.upper()}: {msg.split(':', 1)[1].strip()}") from None
        raise UserError(f"{source}: {msg}") from None


# ----------------------------------------------------------------------------------------------------------------
# PySlowFast weights
# ----------------------------------------------------------------------------------------------------------------

_B = r"blocks\.\d+\."
# Every key of a PySlowFast MViT state dict that this network has (names are identical).
_SLOWFAST_KEYS = [
    r"cls_token",
    r"patch_embed\.proj\.(weight|bias)",
    r"pos_embed",
    r"pos_embed_(spatial|temporal|class)",
    r"norm_stem\.(weight|bias)",
    _B + r"norm[12]\.(weight|bias)",
    _B + r"attn\.(qkv|q|k|v)\.(weight|bias)",
    _B + r"attn\.proj\.(weight|bias)",
    _B + r"attn\.pool_[qkv]\.weight",
    _B + r"attn\.norm_[qkv]\.(weight|bias)",
    _B + r"attn\.rel_pos_[hwt]",
    _B + r"mlp\.fc[12]\.(weight|bias)",
    _B + r"proj\.(weight|bias)",
    r"norm\.(weight|bias)",
    r"head\.projection\.(weight|bias)",
]
_SLOWFAST_RE = re.compile("|".join(f"(?:{p})" for p in _SLOWFAST_KEYS))
# PySlowFast keys we recognise but whose feature this network does not have: say which feature.
_SLOWFAST_UNSUPPORTED = [
    (re.compile(_B + r"gamma_[12]"), "layer scale (MVIT.LAYER_SCALE_INIT_VALUE > 0)"),
    (re.compile(r"rev_backbone\.|fuse\."), "reversible MViT (MVIT.REV.ENABLE)"),
    (re.compile(r"head\.(?!projection\.)"), "a head other than TransformerBasicHead (detection?)"),
]


def from_slowfast(
    state_dict: Mapping[str, torch.Tensor], source: str = "PySlowFast weights", reverse_input_channel: bool = False
) -> dict[str, torch.Tensor]:
    """PySlowFast MViT `model_state` -> our state dict (strip `module.`; refuse any key not understood).

    reverse_input_channel (slowfast_input_is_bgr): the source network saw normalised clips with channels in BGR
    order; the patch-embedding kernel's input channels are reversed so ours takes RGB and computes the same."""
    out = strip_wrapper_prefixes(state_dict)
    unknown = []
    for key in out:
        if _SLOWFAST_RE.fullmatch(key):
            continue
        for pattern, feature in _SLOWFAST_UNSUPPORTED:
            if pattern.match(key):
                raise UserError(f"{source}: uses {feature} (key {key}); this network does not support it")
        unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise UserError(f"{source}: keys this converter does not understand: {shown}")
    for key, value in out.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
    if reverse_input_channel:
        weight = out.get("patch_embed.proj.weight")
        if weight is None or weight.dim() != 5 or weight.shape[1] != 3:
            raise UserError(f"{source}: no RGB patch_embed.proj.weight to fold the BGR input order into")
        out["patch_embed.proj.weight"] = weight.flip(1)  # conv(W[:, ::-1], rgb) == conv(W, bgr)
        logger.info("%s: BGR input order folded into patch_embed.proj.weight; the model takes RGB", source)
    return out


# ----------------------------------------------------------------------------------------------------------------
# torchvision
# ----------------------------------------------------------------------------------------------------------------

def torchvision_config(num_frames: int = 16, crop_size: int = 224, num_classes: int = 400) -> MViTConfig:
    """torchvision's `mvit_v2_s` as an MViTConfig, built for num_frames x crop_size^2 inputs."""
    # mvit_v2_s (torchvision/models/video/mvit.py) is PySlowFast's K400 MViTv2-S 16x4 network (conf/model/mvit_s):
    # stages [1, 2, 11, 2], stochastic depth 0.2, the MViTv2 defaults otherwise; in PySlowFast's per-block form,
    # as torchvision lists it block by block.
    return MViTConfig(
        depth=16, **stage_lists([1, 2, 11, 2]), droppath_rate=0.2, num_classes=num_classes, dropout_rate=0.5,
        num_frames=num_frames, crop_size=crop_size,
    )


def torchvision_data_config(num_frames: int = 16, crop_size: int = 224) -> dict:
    """Inputs of torchvision's MViT_V2_S_Weights.KINETICS400_V1: 16 frames at 7.5 fps (30 fps / 4), 256 -> 224."""
    return {
        "num_frames": num_frames,
        "sampling_rate": 4,
        "target_fps": 30,
        "train_crop_size": crop_size,
        "test_crop_size": crop_size,
        "mean": [0.45, 0.45, 0.45],
        "std": [0.225, 0.225, 0.225],
        "dataset": "kinetics",
        "use_offset_sampling": True,
        "train_jitter_scales": [256, 320],
    }


def torchvision_class_names() -> list[str]:
    """The 400 Kinetics class names of torchvision's MViT_V2_S_Weights.KINETICS400_V1 (shipped in the package)."""
    from torchvision.models.video import MViT_V2_S_Weights

    return list(MViT_V2_S_Weights.KINETICS400_V1.meta["categories"])


# torchvision name -> our (PySlowFast) name; applied to the part after `blocks.{i}.` or to top-level keys.
_TV_BLOCK_RENAMES = [
    (r"attn\.project\.0\.(weight|bias)", r"attn.proj.\1"),
    (r"attn\.pool_([qkv])\.pool\.weight", r"attn.pool_\1.weight"),
    (r"attn\.pool_([qkv])\.norm_act\.0\.(weight|bias)", r"attn.norm_\1.\2"),
    (r"attn\.qkv\.(weight|bias)", r"attn.qkv.\1"),
    (r"attn\.rel_pos_([hwt])", r"attn.rel_pos_\1"),
    (r"norm([12])\.(weight|bias)", r"norm\1.\2"),
    (r"mlp\.0\.(weight|bias)", r"mlp.fc1.\1"),
    (r"mlp\.3\.(weight|bias)", r"mlp.fc2.\1"),
    (r"project\.(weight|bias)", r"proj.\1"),
]
_TV_TOP_RENAMES = [
    (r"conv_proj\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"pos_encoding\.class_token", r"cls_token"),
    (r"norm\.(weight|bias)", r"norm.\1"),
    (r"head\.1\.(weight|bias)", r"head.projection.\1"),
]


def _tv_rename(key: str) -> str | None:
    """Our name for a torchvision MViT key, or None when it has no counterpart."""
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
    rules, rest, prefix = (_TV_BLOCK_RENAMES, m.group(2), f"blocks.{m.group(1)}.") if m else (_TV_TOP_RENAMES, key, "")
    for pattern, replacement in rules:
        if re.fullmatch(pattern, rest):
            return prefix + re.sub(pattern, replacement, rest)
    return None


def from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision `mvit_v2_s` state dict -> our state dict (renamed; class token [D] -> [1, 1, D])."""
    state_dict = strip_wrapper_prefixes(state_dict)
    if any(k.startswith("pos_encoding.") and k != "pos_encoding.class_token" for k in state_dict):
        raise UserError(
            "torchvision weights with absolute position embeddings (mvit_v1_b) are not supported; only mvit_v2_s"
        )
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        new = _tv_rename(key)
        if new is None:
            unknown.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise UserError(f"torchvision weights: {key} is a {type(value).__name__}, not a tensor")
        if new == "cls_token":
            if value.dim() != 1:
                raise UserError(
                    f"torchvision weights: pos_encoding.class_token has shape {tuple(value.shape)}, expected [D]"
                )
            value = value.reshape(1, 1, -1)  # torchvision keeps [D]; PySlowFast (and we) keep [1, 1, D]
        out[new] = value
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise UserError(f"torchvision weights have keys this converter does not understand: {shown}")
    return out


def torchvision_input_size(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(num_frames, crop_size) an mvit_v2_s state dict was built for, read off block 0's rel-pos tables.

    Block 0 of mvit_v2_s has q stride 1 and patch stride (2, 4, 4): rel_pos_t has 2*(T/2)-1 rows and rel_pos_h
    2*(S/4)-1 rows."""
    state_dict = strip_wrapper_prefixes(state_dict)
    try:
        rows_t = state_dict["blocks.0.attn.rel_pos_t"].shape[0]
        rows_h = state_dict["blocks.0.attn.rel_pos_h"].shape[0]
    except KeyError as e:
        raise UserError(f"torchvision weights have no {e.args[0]}: not an mvit_v2_s state dict") from None
    return (rows_t + 1) // 2 * 2, (rows_h + 1) // 2 * 4


def _is_torchvision_state(state: Mapping[str, Any]) -> bool:
    return any(k.removeprefix("module.").startswith(("conv_proj.", "pos_encoding.")) for k in state)


def to_mvit_state_dict(ckpt: Mapping[str, Any], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Our state dict from any checkpoint dict train.checkpoint_file_path may name (timm's `checkpoint_filter_fn`):
    ours ("model"), a plain state dict, PySlowFast's .pyth ("model_state" + its "cfg", through from_slowfast: key
    checks, BGR input folded) or torchvision's mvit_v2_s weights (through from_torchvision). Wrapper prefixes are
    removed. `path` names the file in errors."""
    if "model_state" in ckpt and "model" not in ckpt:  # PySlowFast: its key names, maybe a BGR-input kernel
        cfg = ckpt.get("cfg")
        if not (isinstance(cfg, str) and cfg.strip()):
            raise UserError(
                f"checkpoint {path}: a PySlowFast checkpoint without its 'cfg'; convert it first: "
                f"python scripts/convert_checkpoint.py --from slowfast --config <its yaml> {path} converted.pyth"
            )
        source = f"{path} (stored cfg)"
        bgr = slowfast_input_is_bgr(cfg, source=source)
        return from_slowfast(ckpt["model_state"], source=str(path), reverse_input_channel=bgr)
    state = ckpt.get("model") or ckpt.get("state_dict") or ckpt
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if _is_torchvision_state(state):
        return from_torchvision(state)
    return strip_wrapper_prefixes(state)


# Pretrained weights by name (train.checkpoint_file_path, infer, Predictor.from_checkpoint): "torchvision:<model>"
# -> the torchvision weights enum member fetched through torchvision's own weights API (and its cache).
TORCHVISION_PREFIX = "torchvision:"
TORCHVISION_WEIGHTS = {"mvit_v2_s": ("MViT_V2_S_Weights", "KINETICS400_V1")}


def is_weights_name(path: str | os.PathLike) -> bool:
    """True for a named set of pretrained weights ("torchvision:mvit_v2_s") rather than a file."""
    return isinstance(path, str) and path.startswith(TORCHVISION_PREFIX)


def _torchvision_weights(name: str) -> Any:
    """The torchvision weights enum member `name` stands for; UserError listing the known names otherwise."""
    model = name[len(TORCHVISION_PREFIX):]
    if model not in TORCHVISION_WEIGHTS:
        known = ", ".join(TORCHVISION_PREFIX + k for k in TORCHVISION_WEIGHTS)
        raise UserError(f"{name}: unknown pretrained weights (known: {known})")
    import torchvision.models.video as tv_video

    enum, member = TORCHVISION_WEIGHTS[model]
    return getattr(getattr(tv_video, enum), member)


def torchvision_weights_file(name: str) -> Path:
    """Where torchvision keeps the file of weights `name`: <torch hub dir>/checkpoints/<file name of its URL>
    (the hub dir is $TORCH_HOME/hub, ~/.cache/torch/hub by default), as load_state_dict_from_url caches it."""
    from urllib.parse import urlparse

    url = _torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def named_weights(name: str) -> dict[str, Any]:
    """The pretrained weights `name` (e.g. "torchvision:mvit_v2_s": torchvision's Kinetics-400 weights), fetched by
    torchvision's weights API into its cache (or read from there) and converted: {"model": our state dict,
    "model_config": MViTConfig, "data_config", "class_names", "source"} (mvit_video.checkpoint.named_checkpoint
    makes a checkpoint of them). Offline without the file: one UserError naming the URL and where to put it."""
    weights, path = _torchvision_weights(name), torchvision_weights_file(name)
    cached = path.is_file()
    try:
        state = weights.get_state_dict(progress=False, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any download or read failure becomes the one line below
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        if cached:
            raise UserError(f"{name}: cannot read {path} ({reason}); delete it to download it again") from None
        raise UserError(f"{name}: cannot download {weights.url} ({reason}); without network, download that file "
                        f"elsewhere and put it at {path} (torchvision's cache: $TORCH_HOME/hub/checkpoints)") from None
    if not cached:
        logger.info("%s: downloaded %s into %s", name, weights.url, path)
    converted = from_torchvision(state)
    frames, crop = torchvision_input_size(state)
    if "head.projection.weight" not in converted:
        raise UserError(f"{name}: {path} has no head.1.weight (classifier); not torchvision's {name} weights")
    num_classes = int(converted["head.projection.weight"].shape[0])
    names = list(weights.meta["categories"])
    return {
        "model": converted,
        "model_config": torchvision_config(frames, crop, num_classes=num_classes),
        "data_config": torchvision_data_config(frames, crop),
        "class_names": names if len(names) == num_classes else None,
        "source": {"from": "torchvision", "weights": str(weights), "path": str(path)},
    }


def torchvision_mvit(config: MViTConfig) -> torch.nn.Module:
    """torchvision's MViT class built with the block settings `config` describes (mvit_v2_s for
    torchvision_config(T, S)); torchvision's own builder fixes 16x224, this one takes any size."""
    from torchvision.models.video.mvit import MSBlockConfig, MViT

    unsupported = {
        "cls_embed_on": True, "use_abs_pos": False, "use_mean_pooling": False, "norm_stem": False, "mode": "conv",
        "rel_pos_spatial": True, "rel_pos_temporal": True, "residual_pooling": True, "dim_mul_in_att": True,
        "separate_qkv": False, "qkv_bias": True, "mlp_ratio": 4.0,
    }  # fmt: skip
    for key, want in unsupported.items():
        if getattr(config, key) != want:
            raise UserError(f"torchvision's MViT cannot express {key}={getattr(config, key)!r} (needs {want!r})")
    settings = [
        MSBlockConfig(
            num_heads=b.num_heads,
            input_channels=b.dim_in,
            output_channels=b.dim_out,
            kernel_q=list(b.kernel_q) if b.kernel_q is not None else [],
            kernel_kv=list(b.kernel_kv) if b.kernel_kv is not None else [],
            stride_q=list(b.stride_q),
            stride_kv=list(b.stride_kv),
        )
        for b in block_configs(config)
    ]
    return MViT(
        spatial_size=(config.crop_size, config.crop_size),
        temporal_size=config.num_frames,
        block_setting=settings,
        residual_pool=True,
        residual_with_cls_embed=False,
        rel_pos_embed=True,
        proj_after_attn=True,
        dropout=config.dropout_rate,
        stochastic_depth_prob=config.droppath_rate,
        num_classes=config.num_classes,
        patch_embed_kernel=tuple(config.patch_kernel),
        patch_embed_stride=tuple(config.patch_stride),
        patch_embed_padding=tuple(config.patch_padding),
    )



# named_checkpoint made a checkpoint of our format here, which made this module import mvit_video.checkpoint (an
# import cycle): it is mvit_video.checkpoint.named_checkpoint now, and the old name works for one release.
_MOVED = {"named_checkpoint": "mvit_video.checkpoint:named_checkpoint"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        value = moved(f"mvit_video.models.convert.{name}", _MOVED[name])
        globals()[name] = value  # one warning per process
        return value
    raise AttributeError(f"module 'mvit_video.models.convert' has no attribute {name!r}")
