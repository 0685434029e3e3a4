"""Something-Something-v2: official `labels.json` + `train.json` / `validation.json` and `{id}.webm` videos.

Segment sampling (REFERENCE §4) and never a horizontal flip (labels say "left to right"). A pre-made Kinetics-
format `{split}.csv` in data.path_to_data_dir is used instead of the json files when present.
"""

from __future__ import annotations

import json
import logging
import os

from mvit_video.data.base import VideoDataset, clip_spec_from_cfg
from mvit_video.data.kinetics import _open_text, join_prefix, list_file, read_class_names, read_list_file
from mvit_video.data.transforms import build_train_transform
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

__all__ = ["template_to_class", "read_ssv2_annotations", "build_ssv2"]

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
    return VideoDataset(
        paths=paths,
        full_paths=[join_prefix(prefix, p) for p in paths],
        labels=labels,
        split=split,
        spec=clip_spec_from_cfg(cfg, segment_sampling=True),
        train_transform=build_train_transform(cfg, random_flip=False) if split == "train" else None,
        num_sample=int(d.num_sample) if split == "train" else 1,
        max_bad_retries=int(d.max_bad_retries),
        class_names=class_names,
        num_classes=len(class_names) if class_names else max(labels) + 1,
        decode_once=decode_once,
    )
