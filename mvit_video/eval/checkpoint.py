"""Which checkpoint a test scores, and the clip settings it was trained with."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mvit_video.settings import DataConfig
from mvit_video.utils.errors import UserError

logger = logging.getLogger(__name__)

# How a test clip is sampled and shaped: taken from the checkpoint unless set on the command line.
CLIP_KEYS = ("num_frames", "sampling_rate", "target_fps", "test_crop_size", "train_jitter_scales",
             "use_offset_sampling", "mean", "std")


def latest_checkpoint(output_dir: str | Path) -> Path:
    """The intact checkpoint furthest into training in `<output_dir>/checkpoints`, found as training's resume finds
    it (an unreadable newest one is skipped with a warning); UserError when there is none."""
    from mvit_video.engine.checkpoint import checkpoint_dir, load_latest

    found, _ = load_latest(output_dir)
    if found is None:
        raise UserError(f"no checkpoint in {checkpoint_dir(output_dir)}: pass test.checkpoint=PATH or train first")
    return Path(found)


def clip_settings(data: DataConfig, data_config: Mapping[str, Any] | None, path: Path,
                  explicit: Sequence[str] = ()) -> dict[str, Any]:
    """The checkpoint's clip settings (CLIP_KEYS of its data_config) that differ from `data`, as {key: value} to
    adopt, except for keys set on the command line (`explicit`: data.<key> names), which win with a warning.
    Logs what is adopted and what is kept."""
    if not data_config:
        return {}
    explicit = {e.lstrip("+~") for e in explicit}
    adopted: dict[str, Any] = {}
    kept = []
    for key in CLIP_KEYS:
        if key not in data_config or not hasattr(data, key):
            continue
        ours, theirs = _plain(getattr(data, key)), _plain(data_config[key])
        if ours == theirs:
            continue
        if f"data.{key}" in explicit:
            kept.append(f"data.{key}={ours} (checkpoint: {theirs})")
        else:
            adopted[key] = theirs
    if adopted:
        logger.info("clip settings from the checkpoint %s: %s (set them on the command line to override)", path,
                    ", ".join(f"data.{k}={v}" for k, v in adopted.items()))
    if kept:
        logger.warning("testing with settings that differ from how %s was trained, as set on the command line: %s",
                       path, ", ".join(kept))
    return adopted


def _plain(value: Any) -> Any:
    """Lists and tuples alike as lists, so that (32, 40) from the settings equals [32, 40] from a checkpoint."""
    return list(value) if isinstance(value, (list, tuple)) else value
