"""Something-Something-v2: official `labels.json` + `train.json` / `validation.json` and `{id}.webm` videos.

Segment sampling (REFERENCE §4) and never a horizontal flip (labels say "left to right"). A pre-made Kinetics-
format `{split}.csv` in data.path_to_data_dir is used instead of the json files when present.

PySlowFast samples SSv2 from JPEG frames extracted at 30 fps (`ffmpeg -r 30`, its DATASET.md), not from the webm's
own ~12 fps: data.frame_grid_fps (30) resamples each decoded video to that grid by timestamp, so the segment
indices land on the same frames. Frame folders `{id}/{id}_%06d.jpg` at 30 fps (PySlowFast's layout, written by
`scripts/prepare_ssv2.py --extract-frames`) are read as they are: a list path that is a directory is one video.
Its test views take the short side to TEST_CROP_SIZE and, with one crop, the left/top crop (spatial index
view % NUM_SPATIAL_CROPS = 0), slowfast/datasets/ssv2.py.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Sequence

import numpy as np
import torch

from mvit_video.data import sampling
from mvit_video.data.base import VideoDataset, clip_spec_from_cfg
from mvit_video.data.decoding import VideoDecodeError, VideoReader
from mvit_video.data.kinetics import _open_text, join_prefix, list_file, read_class_names, read_list_file
from mvit_video.data.transforms import build_train_transform, multi_view_crops
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

__all__ = [
    "template_to_class",
    "read_ssv2_annotations",
    "build_ssv2",
    "FrameGridReader",
    "FrameFolderReader",
    "SSv2Dataset",
]

_SPLIT_FILES = {"train": "train.json", "val": "validation.json", "test": "validation.json"}  # test labels are not public


def template_to_class(template: str) -> str:
    """A video's class name: its template with the [something] placeholder brackets removed."""
    return template.replace("[", "").replace("]", "")


def _load_json(path: str):
    try:
        return json.loads(_open_text(path))
    except FileNotFoundError:
        raise UserError(f"{path}: not found (check data.path_to_data_dir)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def read_ssv2_annotations(data_dir: str, split: str) -> tuple[list[str], list[int], list[str]]:
    """(video ids, labels, class names) from the official json files of `split`."""
    labels_path = join_prefix(data_dir, "labels.json")
    name_to_id = _load_json(labels_path)
    if not isinstance(name_to_id, dict) or not name_to_id:
        raise UserError(f"{labels_path}: expected an object {{template: id}}")
    try:
        by_id = {int(v): k for k, v in name_to_id.items()}
    except (TypeError, ValueError):
        raise UserError(f"{labels_path}: ids must be integers (strings of digits)") from None
    if sorted(by_id) != list(range(len(by_id))):
        raise UserError(f"{labels_path}: ids must be 0..{len(by_id) - 1}")
    class_names = [by_id[i] for i in range(len(by_id))]
    lookup = {template_to_class(k): int(v) for k, v in name_to_id.items()}
    split_path = join_prefix(data_dir, _SPLIT_FILES[split])
    entries = _load_json(split_path)
    if not isinstance(entries, list):
        raise UserError(f"{split_path}: expected a list of {{id, template, ...}}")
    ids, labels = [], []
    for i, e in enumerate(entries):
        try:
            vid, template = str(e["id"]), e["template"]
        except (KeyError, TypeError):
            raise UserError(f"{split_path}: entry {i} lacks 'id' or 'template'") from None
        name = template_to_class(template)
        if name not in lookup:
            raise UserError(f"{split_path}: entry {i} (id {vid}): template {template!r} not in labels.json")
        ids.append(vid)
        labels.append(lookup[name])
    if not ids:
        raise UserError(f"{split_path}: no videos")
    return ids, labels, class_names


class FrameGridReader(VideoReader):
    """A reader seen at `grid_fps`: frame k is the source frame sampling.frame_grid shows at time k / grid_fps."""

    def __init__(self, reader: VideoReader, grid_fps: float) -> None:
        self._reader = reader
        self.path, self.name = reader.path, getattr(reader, "name", "")
        self._map = sampling.frame_grid(reader.num_frames, reader.fps, grid_fps)
        self.num_frames, self.fps = len(self._map), float(grid_fps)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        last = self.num_frames - 1
        return self._reader.get_frames([self._map[min(max(int(i), 0), last)] for i in indices])

    def close(self) -> None:
        self._reader.close()


class FrameFolderReader(VideoReader):
    """A folder of JPEG frames `{id}_%06d.jpg` (PySlowFast's extracted SSv2 layout), `fps` frames per second;
    frame i is the i-th file in name order. Decoded to RGB (the model's order; PySlowFast's OpenCV reads BGR and
    its REVERSE_INPUT_CHANNEL turns it back, see convert.slowfast_input_is_bgr)."""

    name = "jpeg"

    def __init__(self, path: str, fps: float = 30.0) -> None:
        self.path, self.fps = path, float(fps)
        try:
            self._files = sorted(e.path for e in os.scandir(path) if e.name.lower().endswith((".jpg", ".jpeg")))
        except OSError as e:
            raise VideoDecodeError(f"{path}: cannot list frames ({e.strerror or e})") from e
        self.num_frames = len(self._files)
        if not self._files:
            raise VideoDecodeError(f"{path}: no .jpg frames in the folder")

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        from PIL import Image  # torchvision's own JPEG decoding is deprecated (0.29)

        last, out, cache = self.num_frames - 1, [], {}
        for i in indices:
            f = self._files[min(max(int(i), 0), last)]
            if f not in cache:
                try:
                    with Image.open(f) as img:
                        cache[f] = torch.from_numpy(np.asarray(img.convert("RGB")).copy())  # [H,W,3] uint8
                except OSError as e:
                    raise VideoDecodeError(f"{f}: not a readable JPEG ({e})") from e
            out.append(cache[f])
        if len({tuple(x.shape) for x in out}) != 1:
            raise VideoDecodeError(f"{self.path}: frames of different sizes")
        return torch.stack(out)


class SSv2Dataset(VideoDataset):
    """VideoDataset with PySlowFast's SSv2 frame grid (frame_grid_fps; 0 = the video's own frames) and its
    one-crop test view (left/top)."""

    def __init__(self, *args, frame_grid_fps: float = 30.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frame_grid_fps = float(frame_grid_fps)

    def _open(self, path: str) -> VideoReader:
        if os.path.isdir(path):  # extracted frames, already on the 30 fps grid
            return FrameFolderReader(path, self.frame_grid_fps or 30.0)
        reader = super()._open(path)
        if self.frame_grid_fps > 0 and abs(reader.fps - self.frame_grid_fps) > 1e-6:
            return FrameGridReader(reader, self.frame_grid_fps)
        return reader

    def view_transform(self, frames: torch.Tensor, clips: Sequence[Sequence[int]]) -> torch.Tensor:
        s = self.spec
        return multi_view_crops(
            frames, clips, s.test_crop_size, s.num_spatial_crops, s.mean, s.std, s.test_crop_size, one_crop_index=0
        )


def build_ssv2(cfg, split: str, decode_once: bool = True) -> VideoDataset:
    """SSv2 dataset; videos at `<data.path_prefix or data.path_to_data_dir>/{id}.webm`."""
    d = cfg.data
    data_dir = str(d.path_to_data_dir)
    if not data_dir:
        raise ConfigError("data.path_to_data_dir: not set (the folder with labels.json, train.json, validation.json)")
    csv_path = list_file(cfg, split, data_dir)
    if str(d.get(f"{split}_list") or "") or ("://" not in csv_path and os.path.exists(csv_path)):
        paths, labels = read_list_file(csv_path, str(d.path_label_separator))
        class_names = read_class_names(join_prefix(data_dir, "classes.txt"))
        prefix = str(d.path_prefix)
    else:
        ids, labels, class_names = read_ssv2_annotations(data_dir, split)
        paths = [f"{i}.webm" for i in ids]
        prefix = str(d.path_prefix) or data_dir
    if bool(d.random_flip):
        logger.warning("data.random_flip is ignored for SSv2: its labels name directions (left to right)")
    spec = clip_spec_from_cfg(cfg, segment_sampling=True)
    spec.test_short_side = spec.test_crop_size  # PySlowFast's Ssv2: short side = TEST_CROP_SIZE for 1 and 3 crops
    return SSv2Dataset(
        paths=paths,
        full_paths=[join_prefix(prefix, p) for p in paths],
        labels=labels,
        split=split,
        spec=spec,
        train_transform=build_train_transform(cfg, random_flip=False) if split == "train" else None,
        num_sample=int(d.num_sample) if split == "train" else 1,
        max_bad_retries=int(d.max_bad_retries),
        class_names=class_names,
        num_classes=len(class_names) if class_names else max(labels) + 1,
        decode_once=decode_once,
        frame_grid_fps=float(d.frame_grid_fps),
    )
