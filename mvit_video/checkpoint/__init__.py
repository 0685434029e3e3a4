"""Our checkpoint format and everything that reads or writes it, split by what changes together:

- `format`: what a checkpoint holds (FORMAT, make_checkpoint, data_config), reading it (torch_load, load,
  load_checkpoint_info, load_model), writing it atomically (save), and where training keeps them (paths, the best
  one, retention, the latest intact one);
- `rng`: the RNG states a training checkpoint carries for exact resume;
- `pretrained`: initial weights for fine-tuning, through the converter of foreign formats (mvit_video.models.convert).

Every name is importable from here (`mvit_video.checkpoint.load_model`, as documented; the stable public API is
`mvit_video.load_model`). Arrows run one way: this package imports models/, never the other way round.
"""

from __future__ import annotations

from typing import Any

from mvit_video.checkpoint import format
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

# The data settings a checkpoint carries (data_config) and the evaluation policy built on them (clip_settings) move
# next to evaluate/predict in #22 (items 6, 8). They are read from format.py when used, not imported above, so that
# wherever they go (leaving a deprecation shim) importing this package stays free of warnings.
_FORWARDED = ("CLIP_KEYS", "DATA_CONFIG_KEYS", "TEST_CONFIG_KEYS", "clip_settings", "data_config")


def __getattr__(name: str) -> Any:
    if name in _FORWARDED:
        return getattr(format, name)
    raise AttributeError(f"module 'mvit_video.checkpoint' has no attribute {name!r}")
