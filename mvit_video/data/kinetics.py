"""Kinetics-400/600/700 (and any dataset in PySlowFast's list format): `{split}.csv` lines `path label`."""

from __future__ import annotations

import logging
import os
from typing import Optional

from mvit_video.data.base import VideoDataset, clip_spec_from_cfg
from mvit_video.data.transforms import build_train_transform
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

__all__ = ["read_list_file", "read_class_names", "join_prefix", "list_file", "build_kinetics"]


def _open_text(path: str) -> str:
    """Read a UTF-8 text file (a BOM is dropped), local or through iopath (remote URIs). A directory or a file
    that is not UTF-8 is a UserError naming it; a missing file raises FileNotFoundError for the caller to word."""
    try:
        if "://" in path:
            from iopath.common.file_io import g_pathmgr

            with g_pathmgr.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a text file") from None
    try:
        return data.decode("utf-8-sig")  # Windows editors start UTF-8 files with a BOM
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                        f"save it as UTF-8") from None


def join_prefix(prefix: str, path: str) -> str:
    """`prefix/path` for a relative path (as PySlowFast's os.path.join); absolute paths and URIs unchanged."""
    if not prefix or os.path.isabs(path) or "://" in path:
        return path
    return prefix.rstrip("/") + "/" + path if "://" in prefix else os.path.join(prefix, path)


def read_list_file(list_path: str, separator: str = " ", *, labels_optional: bool = False,
                   missing_hint: str = " (check data.path_to_data_dir)") -> tuple[list[str], list[int]]:
    """Parse a PySlowFast list file into (paths, labels); a malformed line raises UserError `file:line: why`.

    `labels_optional`: a line may be a bare path (label -1), as in lists of videos to extract features from."""
    try:
        text = _open_text(list_path)
    except FileNotFoundError:
        raise UserError(f"{list_path}: list file not found{missing_hint}") from None
    except OSError as e:
        raise UserError(f"{list_path}: cannot read list file ({e})") from None
    sep = separator if separator not in ("", None) else " "
    paths: list[str] = []
    labels: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        # split at the LAST separator: paths may contain the separator (spaces in file names), labels cannot
        parts = line.rsplit(sep, 1) if sep.strip() else line.rsplit(None, 1)
        if labels_optional and not (len(parts) == 2 and parts[0].strip() and parts[1].strip().isdigit()):
            paths.append(line)
            labels.append(-1)
            continue
        if len(parts) != 2 or not parts[0].strip():
            raise UserError(f"{list_path}:{lineno}: expected 'path{sep}label', got {line!r}")
        path, label = parts[0].strip(), parts[1].strip()
        try:
            value = int(label)
        except ValueError:
            raise UserError(f"{list_path}:{lineno}: label {label!r} is not an integer") from None
        if value < 0:
            raise UserError(f"{list_path}:{lineno}: label {value} is negative")
        paths.append(path)
        labels.append(value)
    if not paths:
        raise UserError(f"{list_path}: list file has no videos")
    return paths, labels


def read_class_names(path: str) -> Optional[list[str]]:
    """Class names from a `classes.txt` (one per line, line i = class i), or None when the file is absent."""
    if "://" not in path and not os.path.exists(path):
        return None
    try:
        names = [n.strip() for n in _open_text(path).splitlines()]
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserError(f"{path}: cannot read the class names ({e.strerror or e})") from None
    return [n for n in names if n] or None


def list_file(cfg, split: str, data_dir: str) -> str:
    """The list of `split`: data.{split}_list when set (relative paths are inside data_dir, e.g. the
    train_clean.csv that check_dataset.py --write-clean wrote), else `<data_dir>/{split}.csv`."""
    chosen = str(cfg.data.get(f"{split}_list") or "")
    return join_prefix(data_dir, chosen or f"{split}.csv")


def build_kinetics(
    cfg, split: str, data_dir: Optional[str] = None, prefix: Optional[str] = None, decode_once: bool = True
) -> VideoDataset:
    """VideoDataset over `<data_dir>/{split}.csv` (data_dir defaults to data.path_to_data_dir)."""
    d = cfg.data
    data_dir = str(data_dir if data_dir is not None else d.path_to_data_dir)
    if not data_dir:
        raise ConfigError("data.path_to_data_dir: not set (the folder with train.csv / val.csv / test.csv)")
    list_path = list_file(cfg, split, data_dir)
    paths, labels = read_list_file(list_path, str(d.path_label_separator))
    prefix = str(prefix if prefix is not None else d.path_prefix)
    class_names = read_class_names(join_prefix(data_dir, "classes.txt"))
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
        decode_once=decode_once,
    )
