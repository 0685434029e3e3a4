"""Kinetics-400/600/700 (and any dataset in PySlowFast's list format): `{split}.csv` lines `path label`."""

from __future__ import annotations

import logging
from typing import Optional

from mvit_video.data.base import VideoDataset
from mvit_video.data.clips import clip_spec_from_cfg
from mvit_video.data.lists import join_prefix, read_class_names, read_list_file
from mvit_video.data.transforms import build_train_transform
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

__all__ = ["list_file", "build_kinetics"]


def list_file(cfg, split: str, data_dir: str) -> str:
    """The list of `split`: data.{split}_list when set (relative paths are inside data_dir, e.g. the
    train_clean.csv that check_dataset.py --write-clean wrote), else `<data_dir>/{split}.csv`."""
    chosen = str(cfg.data.get(f"{split}_list") or "")
    return join_prefix(data_dir, chosen or f"{split}.csv")


def build_kinetics(cfg, split: str, data_dir: Optional[str] = None, prefix: Optional[str] = None) -> VideoDataset:
    """VideoDataset over `<data_dir>/{split}.csv` (data_dir defaults to data.path_to_data_dir)."""
    d = cfg.data
    data_dir = str(data_dir if data_dir is not None else d.path_to_data_dir)
    if not data_dir:
        raise ConfigError("data.path_to_data_dir: not set (the folder with train.csv / val.csv / test.csv)")
    list_path = list_file(cfg, split, data_dir)
    paths, labels = read_list_file(list_path, str(d.path_label_separator))
    prefix = str(prefix if prefix is not None else d.path_prefix)
    class_names = read_class_names(join_prefix(data_dir, "classes.txt"), required=False)
    if class_names is not None:
        for i, label in enumerate(labels):
            if label >= len(class_names):
                raise UserError(
                    f"{list_path}: label {label} of {paths[i]!r} >= {len(class_names)} classes in classes.txt"
                )
    num_classes = len(class_names) if class_names else max(labels) + 1
    return VideoDataset(
        paths=paths,
        full_paths=[join_prefix(prefix, p) for p in paths],
        labels=labels,
        split=split,
        spec=clip_spec_from_cfg(cfg),
        # PySlowFast's Kinetics decoder scales frames to short side TRAIN_JITTER_SCALES[0] before augmentation
        train_transform=(
            build_train_transform(cfg, decode_short_side=int(d.train_jitter_scales[0])) if split == "train" else None
        ),
        num_sample=int(d.num_sample) if split == "train" else 1,
        max_bad_retries=int(d.max_bad_retries),
        class_names=class_names,
        num_classes=num_classes,
    )
