"""Something-Something-v2: official `labels.json` + `train.json` / `validation.json` and `{id}.webm` videos.

Segment sampling (REFERENCE §4) and never a horizontal flip (labels say "left to right"). A pre-made Kinetics-
format `{split}.csv` in data.path_to_data_dir is used instead of the json files when present.

PySlowFast samples SSv2 from JPEG frames extracted at 30 fps (`ffmpeg -r 30`, its DATASET.md), not from the webm's
own ~12 fps: data.frame_grid_fps (30) resamples each decoded video to that grid by timestamp, so the segment
indices land on the same frames. Frame folders `{id}/{id}_%06d.jpg` at 30 fps (PySlowFast's layout, written by
`scripts/prepare_ssv2.py --extract-frames`) are read as they are: a list path that is a directory is one video.
Its test views take the short side to TEST_CROP_SIZE and, with one crop, the left/top crop (spatial index
view % NUM_SPATIAL_CROPS = 0), slowfast/datasets/ssv2.py. All of this is `settings.SSV2_PROTOCOL`, registered
with this builder; `ClipSpec.for_dataset` (data/clips.py) applies it, here and for SSv2 checkpoints in `Predictor`.
"""

from __future__ import annotations

import logging
import os

from mvit_video.data.base import VideoDataset, list_dataset
from mvit_video.data.clips import ClipSpec
from mvit_video.data.kinetics import list_file
from mvit_video.data.lists import join_prefix, read_class_names, read_list_file, read_ssv2_labels, read_ssv2_split
from mvit_video.settings import AugConfig, DataConfig
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

__all__ = ["read_ssv2_annotations", "build_ssv2"]

_SPLIT_FILES = {"train": "train.json", "val": "validation.json", "test": "validation.json"}  # test labels are not public
_HINT = " (check data.path_to_data_dir)"


def read_ssv2_annotations(data_dir: str, split: str) -> tuple[list[str], list[int], list[str]]:
    """(video ids, labels, class names) from the official json files of `split`."""
    class_names = read_ssv2_labels(join_prefix(data_dir, "labels.json"), missing_hint=_HINT)
    split_path = join_prefix(data_dir, _SPLIT_FILES[split])
    items = read_ssv2_split(split_path, class_names, missing_hint=_HINT)
    if not items:
        raise UserError(f"{split_path}: no videos")
    return [vid for vid, _ in items], [int(label) for _, label in items], class_names


def _check_json_layout(data_dir: str, csv_path: str) -> None:
    """A folder of prepare_ssv2 lists without this split's list is a missing list, not a json layout to read."""
    if "://" in data_dir or os.path.exists(join_prefix(data_dir, "labels.json")):
        return
    lists = [n for n in ("train.csv", "val.csv") if os.path.exists(join_prefix(data_dir, n))]
    if lists:
        raise UserError(f"{csv_path}: not found (the folder has {', '.join(lists)}); re-run scripts/prepare_ssv2.py, "
                        f"which writes test.csv (= the validation videos), or set data.test_list=val.csv")


def build_ssv2(data: DataConfig, aug: AugConfig, spec: ClipSpec, split: str,
               augment_on_device: bool = False) -> VideoDataset:
    """SSv2 dataset (spec: the SSv2 protocol, ClipSpec.from_config with data.dataset ssv2); videos at
    `<data.path_prefix or data.path_to_data_dir>/{id}.webm`; `augment_on_device` as build_kinetics."""
    data_dir = data.path_to_data_dir
    if not data_dir:
        raise ConfigError("data.path_to_data_dir: not set (the folder with labels.json, train.json, validation.json)")
    csv_path = list_file(data, split, data_dir)
    if data.list_file(split) or ("://" not in csv_path and os.path.exists(csv_path)):
        list_path, classes_file = csv_path, join_prefix(data_dir, "classes.txt")
        paths, labels = read_list_file(csv_path, data.path_label_separator)
        class_names = read_class_names(classes_file, required=False)
        prefix = data.path_prefix
    else:
        _check_json_layout(data_dir, csv_path)
        list_path, classes_file = join_prefix(data_dir, _SPLIT_FILES[split]), join_prefix(data_dir, "labels.json")
        ids, labels, class_names = read_ssv2_annotations(data_dir, split)
        paths = [f"{i}.webm" for i in ids]
        prefix = data.path_prefix or data_dir
    if data.random_flip:
        logger.warning("data.random_flip is ignored for SSv2: its labels name directions (left to right)")
    return list_dataset(
        data, aug, spec, split, list_path=list_path, paths=paths, labels=labels, prefix=prefix,
        class_names=class_names, classes_file=classes_file, augment_on_device=augment_on_device,
        # PySlowFast reads SSv2 frames as BGR (cv2) and hands them to PIL as RGB: RandAugment's grey is swapped
        random_flip=False, bgr_grey=True,
    )
