"""Kinetics-400/600/700 (and any dataset in PySlowFast's list format): `{split}.csv` lines `path label`."""

from __future__ import annotations

import logging
from typing import Optional

from mvit_video.data.base import VideoDataset
from mvit_video.data.clips import ClipSpec
from mvit_video.data.lists import join_prefix, read_class_names, read_list_file
from mvit_video.data.augment import TrainAugment, build_aug_spec
from mvit_video.settings import AugConfig, DataConfig
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

__all__ = ["list_file", "build_kinetics"]


def list_file(data: DataConfig, split: str, data_dir: str) -> str:
    """The list of `split`: data.{split}_list when set (relative paths are inside data_dir, e.g. the
    train_clean.csv that check_dataset.py --write-clean wrote), else `<data_dir>/{split}.csv`."""
    return join_prefix(data_dir, data.list_file(split) or f"{split}.csv")


def build_kinetics(data: DataConfig, aug: AugConfig, spec: ClipSpec, split: str, data_dir: Optional[str] = None,
                   prefix: Optional[str] = None, augment_on_device: bool = False) -> VideoDataset:
    """VideoDataset over `<data_dir>/{split}.csv` (data_dir defaults to data.path_to_data_dir, prefix to
    data.path_prefix); `augment_on_device`: train items carry frames + parameters (data/augment.py)."""
    data_dir = data_dir if data_dir is not None else data.path_to_data_dir
    if not data_dir:
        raise ConfigError("data.path_to_data_dir: not set (the folder with train.csv / val.csv / test.csv)")
    list_path = list_file(data, split, data_dir)
    paths, labels = read_list_file(list_path, data.path_label_separator)
    prefix = prefix if prefix is not None else data.path_prefix
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
        spec=spec,
        # PySlowFast's Kinetics decoder scales frames to short side TRAIN_JITTER_SCALES[0] before augmentation
        train_transform=(
            TrainAugment(build_aug_spec(data, aug, decode_short_side=data.train_jitter_scales[0]))
            if split == "train" else None
        ),
        augment_on_device=augment_on_device and split == "train",
        num_sample=data.num_sample if split == "train" else 1,
        max_bad_retries=data.max_bad_retries,
        class_names=class_names,
        num_classes=num_classes,
    )
