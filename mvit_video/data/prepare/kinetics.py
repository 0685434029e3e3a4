"""Kinetics-400/600/700 official annotation CSVs + a folder of downloaded videos -> PySlowFast list files.

Writes into --out:
  train.csv / val.csv / test.csv   one video per line, `path label` (the --separator, a space by default);
                                   paths relative to --videos (set `data.path_prefix` to it) or absolute (--absolute)
  classes.txt                      one class name per line; class index = line number (0-based) = position of the
                                   name in the sorted list of names (Python's `sorted`, the torchvision order)
  missing_<split>.txt              the annotation rows whose video was not found (CSV with the original header,
                                   so it can be fed back to a downloader)
  <split>_unlabeled.txt            for a split whose CSV has no `label` column (K600/K700 test): found paths only

Video files are found anywhere under --videos (recursively, so the flat layout and the `{split}/{label}/` layout of
the common downloaders both work), by file name:
  `{youtube_id}_{time_start:06d}_{time_end:06d}.{ext}`  (ActivityNet crawler, CVDF, mmaction; zero padding optional)
  `{youtube_id}.{ext}`                                   (one clip per YouTube id)
Empty (0-byte) files count as missing. Use scripts/check_dataset.py afterwards to find undecodable ones.

--reencode-short-side PX --keyint K writes H.264 copies of the found videos (short side PX, never upscaled; a
keyframe every K frames; every frame and the frame rate kept; audio dropped) under --reencode-dir (default
<out>/videos_<PX>p_k<K>, mirroring --videos) in --workers processes, and the lists name the copies. Resumable: a
copy is written as <name>.part and renamed when complete, and a re-run skips finished copies. Videos that cannot
be decoded are listed in <out>/reencode_failed.txt and counted as missing; the originals are only read.

Example:
  python scripts/prepare_kinetics.py --annotations k400/annotations --videos k400/videos --out data/k400 \
      [--reencode-short-side 320 --keyint 30 --workers 16]
  python -m mvit_video.train data=kinetics data.path_to_data_dir=data/k400 data.path_prefix=k400/videos
(the command printed at the end runs as printed; without a labelled test CSV it tests on val.csv)
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from mvit_video.data.lists import read_class_names
from mvit_video.data.prepare.common import train_command
from mvit_video.data.prepare.reencode import add_reencode_args, reencode_tree, settings_from_args
from mvit_video.utils.errors import UserError, cli_errors
from mvit_video.utils.io import atomic_write_text

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
# `{youtube_id}_{start}_{end}`; YouTube ids are 11 chars of [A-Za-z0-9_-], so the greedy id group is safe.
_SEGMENT_STEM = re.compile(r"^(?P<yid>.+)_(?P<start>\d+)_(?P<end>\d+)$")
# Official file names per output split, in the order they are tried.
_ANNOTATION_NAMES = {
    "train": ("train.csv", "kinetics_train.csv"),
    "val": ("validate.csv", "val.csv", "validation.csv", "kinetics_val.csv"),
    "test": ("test.csv", "kinetics_test.csv"),
}


@dataclass
class VideoIndex:
    """Video files under a root, looked up by `{id}_{start}_{end}` segment or by plain file stem."""

    root: Path
    by_segment: dict[tuple[str, int, int], Path] = field(default_factory=dict)
    by_stem: dict[str, Path] = field(default_factory=dict)
    empty: set[Path] = field(default_factory=set)
    duplicates: int = 0

    def find(self, youtube_id: str, start: int | None = None, end: int | None = None) -> Path | None:
        """The file of a clip: the `{id}_{start}_{end}` name first, then a plain `{id}` name."""
        if start is not None and end is not None:
            path = self.by_segment.get((youtube_id, start, end))
            if path is not None:
                return path
        return self.by_stem.get(youtube_id)


def index_videos(root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> VideoIndex:
    """Walk `root` recursively once and index every video file by name (os.scandir: fast on 650k files)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: video directory not found")
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    index = VideoIndex(root=root)
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=True):
                    stack.append(Path(entry.path))
                    continue
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() not in exts:
                    continue
                path = Path(entry.path)
                if entry.stat().st_size == 0:
                    index.empty.add(path)
                    continue
                if stem in index.by_stem:
                    index.duplicates += 1
                    continue
                index.by_stem[stem] = path
                m = _SEGMENT_STEM.match(stem)
                if m:
                    index.by_segment.setdefault((m["yid"], int(m["start"]), int(m["end"])), path)
    return index


def reindex(index: VideoIndex, copies: dict[Path, Path], root: Path) -> VideoIndex:
    """`index` with each video replaced by its copy under `root` (videos without one become missing)."""
    return VideoIndex(
        root=root,
        by_segment={k: copies[p] for k, p in index.by_segment.items() if p in copies},
        by_stem={k: copies[p] for k, p in index.by_stem.items() if p in copies},
        empty=index.empty,
        duplicates=index.duplicates,
    )


@dataclass
class Clip:
    """One annotation row: the clip, its class name (None when the CSV has no labels) and where it came from."""

    youtube_id: str
    start: int
    end: int
    label: str | None
    row: list[str]
    where: str  # file:line for error messages


def read_annotations(path: str | os.PathLike) -> tuple[list[str], list[Clip]]:
    """Parse an official Kinetics CSV (header `label,youtube_id,time_start,time_end,split[,is_cc]`; no label in
    K600/K700 test); returns (header, clips). A malformed row raises UserError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: annotation CSV not found")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise UserError(f"{path}:1: empty annotation CSV")
    header = [h.strip() for h in rows[0]]
    for key in ("youtube_id", "time_start", "time_end"):
        if key not in header:
            raise UserError(
                f"{path}:1: header {','.join(header)!r} lacks column {key!r}; expected the official "
                "`label,youtube_id,time_start,time_end,split`"
            )
    col = {name: i for i, name in enumerate(header)}
    clips = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}:{lineno}"
        if len(row) != len(header):
            raise UserError(
                f"{where}: expected {len(header)} comma-separated fields ({','.join(header)}), got {len(row)}"
            )
        try:
            start = int(float(row[col["time_start"]]))
            end = int(float(row[col["time_end"]]))
        except ValueError:
            raise UserError(f"{where}: time_start/time_end must be numbers, got {row[col['time_start']]!r}, "
                            f"{row[col['time_end']]!r}") from None
        youtube_id = row[col["youtube_id"]].strip()
        if not youtube_id:
            raise UserError(f"{where}: empty youtube_id")
        label = row[col["label"]].strip() if "label" in col else None
        if label == "":
            raise UserError(f"{where}: empty label")
        clips.append(Clip(youtube_id, start, end, label, row, where))
    return header, clips


def read_classes(path: str | os.PathLike) -> list[str]:
    """The --classes list (data.lists.read_class_names: line i = class i), whose names must be unique: annotation
    rows are matched to classes by name."""
    names = read_class_names(path)
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate class names")
    return names


def class_lookup(classes: Sequence[str]) -> dict[str, int]:
    """Name -> index, also accepting the `_`-for-space spelling some annotation copies use."""
    lookup = {name: i for i, name in enumerate(classes)}
    for name, i in list(lookup.items()):
        lookup.setdefault(name.replace(" ", "_"), i)
    return lookup


def format_list_line(path: str, label: int, separator: str) -> str:
    """One `path<sep>label` line. A path may contain the separator: mvit_video splits at the last one."""
    return f"{path}{separator}{label}\n"


def relative_or_absolute(path: Path, root: Path, absolute: bool) -> str:
    """The path as written into a list file: absolute, or relative to the video root (data.path_prefix)."""
    return str(path.resolve()) if absolute else path.relative_to(root).as_posix()


def find_annotation_files(directory: Path) -> dict[str, Path]:
    """The official CSVs found in `directory`, keyed by output split."""
    found = {}
    for split, names in _ANNOTATION_NAMES.items():
        for name in names:
            if (directory / name).is_file():
                found[split] = directory / name
                break
    return found


def check_not_overwriting(inputs: Iterable[Path], out_dir: Path, outputs: Iterable[str]) -> None:
    """Refuse to write an output over an input file (e.g. --out equal to the annotation directory)."""
    inputs = {p.resolve() for p in inputs}
    for name in outputs:
        if (out_dir / name).resolve() in inputs:
            raise UserError(f"{out_dir / name}: would overwrite an input file; choose another --out")


def write_split(
    out_dir: Path, split: str, header: list[str], clips: list[Clip], index: VideoIndex,
    lookup: dict[str, int] | None, separator: str, absolute: bool,
) -> tuple[int, int, int]:
    """Write `{split}.csv` (or `{split}_unlabeled.txt`) and `missing_{split}.txt`; returns (found, missing, empty)."""
    lines, missing_rows, empty = [], [], 0
    empty_stems = {p.stem for p in index.empty}
    for clip in clips:
        if lookup is not None and clip.label not in lookup:  # checked for every row, found or not
            raise UserError(f"{clip.where}: label {clip.label!r} is not in the class list")
        path = index.find(clip.youtube_id, clip.start, clip.end)
        if path is None:
            if {f"{clip.youtube_id}_{clip.start:06d}_{clip.end:06d}", clip.youtube_id} & empty_stems:
                empty += 1
            missing_rows.append(clip.row)
            continue
        rel = relative_or_absolute(path, index.root, absolute)
        if lookup is None:
            lines.append(rel + "\n")
            continue
        lines.append(format_list_line(rel, lookup[clip.label], separator))
    name = f"{split}.csv" if lookup is not None else f"{split}_unlabeled.txt"
    atomic_write_text("".join(lines), out_dir / name)
    missing_path = out_dir / f"missing_{split}.txt"
    if missing_rows:
        buf = _csv_text([header] + missing_rows)
        atomic_write_text(buf, missing_path)
    elif missing_path.exists():
        missing_path.unlink()  # a stale report from an earlier run would mislead
    warn_separator_in_paths(lines, separator, out_dir / name)
    return len(lines), len(missing_rows), empty


def warn_separator_in_paths(lines: list[str], separator: str, where: Path) -> None:
    """Paths containing the separator are fine for mvit_video (it splits at the last separator) but PySlowFast
    itself splits at every separator and would reject those lines: say so once per file."""
    n = sum(1 for line in lines if separator in line.rstrip("\n").rsplit(separator, 1)[0])
    if n:
        print(f"note: {where}: {n} paths contain the separator {separator!r}; mvit_video reads them (the label is "
              f"the last field), PySlowFast would not: use --separator ',' for lists shared with PySlowFast")


def _csv_text(rows: list[list[str]]) -> str:
    """Rows as CSV text (quoting names that contain commas, like the official files)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", type=Path, help="directory with the official train.csv/validate.csv/test.csv")
    p.add_argument("--train", type=Path, help="train annotation CSV (overrides --annotations)")
    p.add_argument("--val", type=Path, help="validation annotation CSV (overrides --annotations)")
    p.add_argument("--test", type=Path, help="test annotation CSV (overrides --annotations)")
    p.add_argument("--videos", type=Path, required=True,
                   help="root folder of the downloaded videos (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output directory (data.path_to_data_dir)")
    p.add_argument("--classes", type=Path,
                   help="class list to use (one name per line, e.g. data_lists/kinetics400_classes.txt); "
                        "default: the sorted label names of the train CSV (else of all labelled CSVs)")
    p.add_argument("--absolute", action="store_true", help="write absolute paths (default: relative to --videos)")
    p.add_argument("--separator", default=" ", help="path/label separator (data.path_label_separator), default ' '")
    p.add_argument("--extensions", default=",".join(VIDEO_EXTENSIONS), help="video file suffixes to index")
    add_reencode_args(p)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for --reencode-short-side")
    return p.parse_args(argv)


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.annotations and not args.annotations.is_dir():
        raise UserError(f"{args.annotations}: annotation directory not found")
    files = find_annotation_files(args.annotations) if args.annotations else {}
    for split in ("train", "val", "test"):
        if getattr(args, split) is not None:
            files[split] = getattr(args, split)
    if not files:
        raise UserError("no annotation CSV given: pass --annotations DIR (with train.csv/validate.csv/test.csv) "
                        "or --train/--val/--test")
    annotations = {split: read_annotations(path) for split, path in files.items()}

    if args.classes:
        classes = read_classes(args.classes)
    else:
        labelled = {s: clips for s, (header, clips) in annotations.items() if "label" in header}
        source = labelled.get("train") or [c for clips in labelled.values() for c in clips]
        classes = sorted({c.label for c in source})
        if not classes:
            raise UserError("no labelled annotation CSV: cannot build classes.txt; pass --classes")
    lookup = class_lookup(classes)

    outputs = ["classes.txt"] + [f"{s}.csv" for s in files] + [f"missing_{s}.txt" for s in files]
    check_not_overwriting(list(files.values()), args.out, outputs)
    extensions = [e.strip() for e in args.extensions.split(",") if e.strip()]
    index = index_videos(args.videos, extensions)
    print(f"indexed {len(index.by_stem)} video files under {args.videos}"
          + (f" ({len(index.empty)} empty, {index.duplicates} duplicate names ignored)"
             if index.empty or index.duplicates else ""))

    reencode = settings_from_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if reencode is not None:
        settings, folder = reencode
        used = [p for _, clips in annotations.values() for c in clips
                if (p := index.find(c.youtube_id, c.start, c.end)) is not None]
        index = reindex(index, reencode_tree(used, index.root, settings, folder, args.workers,
                                             args.out / "reencode_failed.txt"), folder)
    atomic_write_text("".join(name + "\n" for name in classes), args.out / "classes.txt")
    print(f"{args.out / 'classes.txt'}: {len(classes)} classes")
    total_missing = 0
    for split, (header, clips) in annotations.items():
        labelled = "label" in header
        found, missing, empty = write_split(args.out, split, header, clips, index, lookup if labelled else None,
                                            args.separator, args.absolute)
        total_missing += missing
        name = f"{split}.csv" if labelled else f"{split}_unlabeled.txt (no labels in {files[split].name})"
        report = f"{split}: {found}/{len(clips)} videos found -> {args.out / name}"
        if missing:
            report += (f"; {missing} missing ({100.0 * missing / max(1, len(clips)):.1f}%"
                       + (f", {empty} of them empty files" if empty else "")
                       + f") -> {args.out / f'missing_{split}.txt'}")
        print(report)
    labelled_test = "test" in annotations and "label" in annotations["test"][0]
    # without test labels (K600/K700 test, or no test CSV) a run's final test reads the validation list
    extra = [] if labelled_test or "val" not in annotations else ["data.test_list=val.csv"]
    command = train_command("kinetics", args.out, None if args.absolute else index.root, len(classes), 400,
                            args.separator, extra)
    print(f"use: {command}")
    return 0
