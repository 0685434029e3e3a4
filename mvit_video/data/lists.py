"""The one reader of every list and class file: PySlowFast lists (`path label`), `classes.txt`, and SSv2's official
json files (`labels.json`, `train.json` / `validation.json` / `test.json`). Formats: data_lists/README.md.

Every user mistake is a UserError naming the file (and the line or entry); a missing file raises UserError too,
with `missing_hint` saying where to look.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Sequence

from mvit_video.utils.errors import ConfigError, UserError

__all__ = [
    "open_text",
    "join_prefix",
    "read_list_file",
    "read_class_names",
    "check_label_range",
    "template_to_class",
    "read_ssv2_labels",
    "read_ssv2_split",
]


def open_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file (a BOM is dropped), local or through iopath (remote URIs). A directory or a file
    that is not UTF-8 is a UserError naming it; a missing file raises FileNotFoundError for the caller to word."""
    path = os.fspath(path)
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


def _read(path: str, what: str, missing_hint: str) -> str:
    try:
        return open_text(path)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found{missing_hint}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read {what} ({e.strerror or e})") from None


def read_list_file(list_path: str | os.PathLike, separator: str = " ", *, labels_optional: bool = False,
                   missing_hint: str = " (check data.path_to_data_dir)") -> tuple[list[str], list[int]]:
    """Parse a PySlowFast list file into (paths, labels); a malformed line raises UserError `file:line: why`.

    `labels_optional`: a line may be a bare path (label -1), as in lists of videos to extract features from."""
    list_path = os.fspath(list_path)
    text = _read(list_path, "list file", missing_hint)
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


def read_class_names(path: str | os.PathLike, *, required: bool = True,
                     missing_hint: str = "") -> Optional[list[str]]:
    """Class names of a `classes.txt`: one per line, line i (0-based) = class i; names are stripped.

    Trailing blank lines are ignored; a blank line before the last name is an error (it would shift every later
    class index). An absent file is None when not `required` (classes.txt is optional next to the lists)."""
    path = os.fspath(path)
    if not required and "://" not in path and not os.path.exists(path):
        return None
    try:
        text = open_text(path)
    except FileNotFoundError:
        if not required:
            return None
        raise UserError(f"{path}: classes file not found{missing_hint}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the class names ({e.strerror or e})") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    for lineno, name in enumerate(names, start=1):
        if not name:
            raise UserError(f"{path}:{lineno}: blank class name (line i is class i - 1: a blank line shifts the "
                            f"classes after it)")
    if not names:
        if not required:
            return None
        raise UserError(f"{path}: no class names in it")
    return names


# ---------------------------------------------------------------- Something-Something-v2 official files


def check_label_range(labels: Sequence[int], num_classes: int, *, listed: str, classes: str,
                      paths: Optional[Sequence[str]] = None, error: type[UserError] = ConfigError) -> None:
    """The one label-range check: every label of a list must be < num_classes. Otherwise `error` naming the
    list (`listed`: its file, or "the val list"), its largest label with the first video holding it, and where
    the count comes from (`classes`, e.g. "model.num_classes is 2", "classes.txt has 5 classes")."""
    if not labels:
        return
    top = max(labels)
    if top < num_classes:
        return
    video = f" ({paths[list(labels).index(top)]})" if paths else ""
    raise error(f"{listed} has label {top}{video} but {classes}: labels must be in [0, {num_classes - 1}]")


def template_to_class(template: str) -> str:
    """A video's class name: its template with the [something] placeholder brackets removed."""
    return template.replace("[", "").replace("]", "")


def _load_json(path: str, missing_hint: str) -> Any:
    text = _read(path, "file", missing_hint)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def read_ssv2_labels(path: str | os.PathLike, *, missing_hint: str = "") -> list[str]:
    """labels.json (`{template: "id"}`) -> class names ordered by id (ids must be 0..N-1, each used once)."""
    path = os.fspath(path)
    labels = _load_json(path, missing_hint)
    if not isinstance(labels, dict) or not labels:
        raise UserError(f"{path}: expected a non-empty object {{template: id}}")
    by_id: dict[int, str] = {}
    for name, value in labels.items():
        try:
            idx = int(value)
        except (TypeError, ValueError):
            raise UserError(f"{path}: class {name!r} has a non-integer id {value!r}") from None
        if idx in by_id:
            raise UserError(f"{path}: id {idx} used by both {by_id[idx]!r} and {name!r}")
        by_id[idx] = name
    if sorted(by_id) != list(range(len(by_id))):
        raise UserError(f"{path}: class ids must be 0..{len(by_id) - 1} without gaps")
    return [by_id[i] for i in range(len(by_id))]


def read_ssv2_split(path: str | os.PathLike, class_names: Optional[list[str]], *,
                    missing_hint: str = "") -> list[tuple[str, Optional[int]]]:
    """A split json (`[{id, template, ...}]`) -> [(video id, class index)]; `class_names` None reads the unlabelled
    test set (ids only, index None). The class of a video is its template without brackets, looked up by name."""
    path = os.fspath(path)
    entries = _load_json(path, missing_hint)
    if not isinstance(entries, list):
        raise UserError(f"{path}: expected a list of {{id, template, ...}} entries")
    lookup: Optional[Mapping[str, int]] = None
    if class_names is not None:
        lookup = {template_to_class(name): i for i, name in enumerate(class_names)}
    items: list[tuple[str, Optional[int]]] = []
    for i, entry in enumerate(entries):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or "id" not in entry:
            raise UserError(f"{where}: expected an object with an 'id'")
        if lookup is None:
            items.append((str(entry["id"]), None))
            continue
        if "template" not in entry:
            raise UserError(f"{where} (id {entry['id']}): lacks 'template'")
        name = template_to_class(str(entry["template"]))
        if name not in lookup:
            raise UserError(f"{where} (id {entry['id']}): template class {name!r} is not in labels.json")
        items.append((str(entry["id"]), lookup[name]))
    return items
