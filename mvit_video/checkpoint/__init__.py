"""Our checkpoint format and everything that reads or writes it, split by what changes together:

- `format`: what a checkpoint holds (FORMAT, make_checkpoint; its data_config is settings.CheckpointData), reading
  it (torch_load, load, load_checkpoint_info, load_model), writing it atomically (save), and where training keeps
  them (paths, the best one, retention, the latest intact one);
- `rng`: the RNG states a training checkpoint carries for exact resume;
- `pretrained`: initial weights for fine-tuning, through the converter of foreign formats (mvit_video.models.convert).

Every name is importable from here (`mvit_video.checkpoint.load_model`, as documented; the stable public API is
`mvit_video.load_model`). Arrows run one way: this package imports models/, never the other way round.
"""

from __future__ import annotations

import warnings
from typing import Any

from mvit_video.checkpoint.format import (
    BEST_NAME,
    FORMAT,
    PREEMPT_NAME,
    batches_done,
    best_checkpoint_path,
    build_from_checkpoint,
    build_with_weights,
    check_class_names,
    check_finite,
    check_state_dict,
    checkpoint_dir,
    checkpoint_epoch,
    epoch_checkpoint_path,
    epoch_checkpoints,
    is_new_best,
    latest_checkpoint,
    link_or_copy,
    load,
    load_checkpoint_info,
    load_latest,
    load_model,
    load_state_dict_strict,
    make_checkpoint,
    plain,
    preempt_checkpoint_path,
    prune_checkpoints,
    remove_orphan_tmp,
    resolve_checkpoint,
    save,
    torch_load,
)
from mvit_video.checkpoint.pretrained import (
    classifier_keys,
    load_pretrained,
    match_pretrained_classes,
    named_checkpoint,
    pretrained_state_dict,
)
from mvit_video.checkpoint.rng import get_rng_state, set_rng_state
from mvit_video.models.convert import strip_wrapper_prefixes  # here before #22; key handling lives in models/
from mvit_video.settings import CHECKPOINT_TEST_KEYS, CheckpointData, RunConfig
from mvit_video.utils.deprecation import moved

__all__ = [
    "BEST_NAME", "CLIP_KEYS", "DATA_CONFIG_KEYS", "FORMAT", "PREEMPT_NAME", "TEST_CONFIG_KEYS", "batches_done",
    "best_checkpoint_path", "build_from_checkpoint", "build_with_weights", "check_class_names", "check_finite",
    "check_state_dict", "checkpoint_dir", "checkpoint_epoch", "classifier_keys", "clip_settings", "data_config",
    "epoch_checkpoint_path", "epoch_checkpoints", "get_rng_state", "is_new_best", "latest_checkpoint", "link_or_copy",
    "load", "load_checkpoint_info", "load_latest", "load_model", "load_pretrained", "load_state_dict_strict",
    "make_checkpoint", "match_pretrained_classes", "named_checkpoint", "plain", "preempt_checkpoint_path",
    "pretrained_state_dict", "prune_checkpoints", "remove_orphan_tmp", "resolve_checkpoint", "save",
    "set_rng_state", "strip_wrapper_prefixes", "torch_load",
]  # fmt: skip

# Moved in #22 (items 6, 8): the data settings a checkpoint carries are the typed record settings.CheckpointData,
# and evaluate's clip policy (clip_settings) sits beside Predictor in predict.py. The old names work for one release,
# with a DeprecationWarning, and only when used: importing this package warns nothing.
_MOVED = {"clip_settings": "mvit_video.predict:clip_settings", "CLIP_KEYS": "mvit_video.predict:CLIP_KEYS"}


def data_config(run: RunConfig) -> dict:
    """Deprecated: `CheckpointData.from_run(run).to_dict()` (mvit_video.settings)."""
    warnings.warn("mvit_video.checkpoint.data_config is deprecated and will be removed in the next release; use "
                  "mvit_video.settings.CheckpointData.from_run(run).to_dict()", DeprecationWarning, stacklevel=2)
    return CheckpointData.from_run(run).to_dict()


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return moved(f"mvit_video.checkpoint.{name}", _MOVED[name])
    if name in ("DATA_CONFIG_KEYS", "TEST_CONFIG_KEYS"):
        warnings.warn(f"mvit_video.checkpoint.{name} is deprecated and will be removed in the next release; use "
                      f"mvit_video.settings.CheckpointData.keys()", DeprecationWarning, stacklevel=2)
        keys, test_keys = CheckpointData.keys(), len(CHECKPOINT_TEST_KEYS)
        return keys[:-test_keys] if name == "DATA_CONFIG_KEYS" else keys[-test_keys:]
    raise AttributeError(f"module 'mvit_video.checkpoint' has no attribute {name!r}")
