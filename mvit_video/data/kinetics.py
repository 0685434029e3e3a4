"""Kinetics-400/600/700 (and any dataset in PySlowFast's list format): `{split}.csv` lines `path label`; the
generated synthetic set is a folder in that format too."""

from __future__ import annotations

import logging
from typing import Optional

from mvit_video.data import synthetic_dir
from mvit_video.data.base import VideoDataset, list_dataset
from mvit_video.data.clips import ClipSpec
from mvit_video.data.lists import join_prefix, read_class_names, read_list_file
from mvit_video.settings import AugConfig, DataConfig
from mvit_video.utils.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["list_file", "build_kinetics", "build_synthetic"]


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
    classes_file = join_prefix(data_dir, "classes.txt")
    return list_dataset(
        data, aug, spec, split, list_path=list_path, paths=paths, labels=labels,
        prefix=prefix if prefix is not None else data.path_prefix,
        class_names=read_class_names(classes_file, required=False), classes_file=classes_file,
        augment_on_device=augment_on_device,
        # PySlowFast's Kinetics decoder scales frames to short side TRAIN_JITTER_SCALES[0] before augmentation
        decode_short_side=data.train_jitter_scales[0],
    )


def build_synthetic(data: DataConfig, aug: AugConfig, spec: ClipSpec, split: str,
                    augment_on_device: bool = False) -> VideoDataset:
    """The generated synthetic set (data.synthetic; generated the first time), read as a Kinetics list folder."""
    root = str(synthetic_dir(data))
    return build_kinetics(data, aug, spec, split, data_dir=root, prefix=root, augment_on_device=augment_on_device)
