"""Something-Something-v2 official json annotations + `{id}.webm` videos -> Kinetics-format list files.

Reads from --annotations: labels.json (template -> class id string), train.json, validation.json (lists of
{id, label, template, placeholders}) and, when present, test.json (ids only). Writes into --out:
  train.csv / val.csv      `path label` lines (label = the labels.json id of the video's template with the
                           "[something]" brackets removed); paths relative to --videos (data.path_prefix) or absolute
  test.csv                 the validation videos again: the official test labels are not public, so SSv2 is tested
                           on validation (as PySlowFast does, and as the ssv2 dataset reads the json files)
  classes.txt              the 174 template names, line number = class id from labels.json
  test_unlabeled.txt       test.json videos found (paths only; the official test set has no labels)
  missing_<split>.txt      ids whose video was not found (one per line)

Videos are found anywhere under --videos by file stem `{id}` (`.webm` as shipped; re-encoded `.mp4` etc. work too).
Training on these lists needs the ssv2 data group, `data=ssv2` (segment sampling on a 30 fps grid, no flip, 1x3 test
views); it can also read the json files directly. The command printed at the end runs as printed.

--extract-frames DIR writes PySlowFast's layout instead: each video as JPEG frames on a 30 fps grid,
DIR/{id}/{id}_000001.jpg, ... (frames duplicated by timestamp as `ffmpeg -r 30` does, its DATASET.md), and the
lists name the folders. Not needed for PySlowFast's frame indices: data.frame_grid_fps=30 (the ssv2 default)
samples the webm on the same grid; the folders trade disk for decode time.

--reencode-short-side PX --keyint K writes H.264 copies (short side PX, a keyframe every K frames, every frame and
the frame rate kept, so the 30 fps grid picks the same frames) under --reencode-dir (default
<out>/videos_<PX>p_k<K>) in --workers processes, resumably, and the lists name the copies; videos that cannot be
decoded are listed in <out>/reencode_failed.txt and missing_<split>.txt.

Example:
  python scripts/prepare_ssv2.py --annotations ssv2/labels --videos ssv2/20bn-something-something-v2 --out data/ssv2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

from mvit_video.data.lists import read_ssv2_labels, read_ssv2_split
from mvit_video.data.prepare.common import train_command
from mvit_video.data.prepare.kinetics import (
    VIDEO_EXTENSIONS,
    format_list_line,
    index_videos,
    relative_or_absolute,
    warn_separator_in_paths,
)
from mvit_video.data.prepare.reencode import add_reencode_args, reencode_tree, settings_from_args
from mvit_video.utils.errors import UserError, cli_errors
from mvit_video.utils.io import atomic_write_text

_SPLIT_FILES = {"train": "train.json", "val": "validation.json", "test": "test.json"}


def extract_frames(video: Path, out_dir: Path, grid_fps: float = 30.0, quality: int = 95) -> int:
    """Write `video` as JPEGs out_dir/{stem}_%06d.jpg (from 1) on a `grid_fps` grid; returns the frame count.
    Written to a temporary folder renamed at the end, so an interrupted run never leaves a partial video."""
    from PIL import Image

    from mvit_video.data.decoding import open_video
    from mvit_video.data.sampling import frame_grid

    if out_dir.is_dir():
        return len(list(out_dir.glob("*.jpg")))  # done by an earlier run
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open_video(video, "pyav") as reader:
        grid = frame_grid(reader.num_frames, reader.fps, grid_fps)
        wanted = sorted(set(grid))
        frames = reader.get_frames(wanted).numpy()  # [F,H,W,3] RGB
    pos = {f: i for i, f in enumerate(wanted)}
    for k, f in enumerate(grid, start=1):
        Image.fromarray(frames[pos[f]]).save(tmp / f"{video.stem}_{k:06d}.jpg", quality=quality)
    os.replace(tmp, out_dir)
    return len(grid)


def _extract_one(job: tuple[Path, Path]) -> tuple[str, str]:
    video, out_dir = job
    try:
        extract_frames(video, out_dir)
        return str(video), ""
    except Exception as e:  # one bad video must not stop the extraction: it is reported and listed as missing
        return str(video), f"{type(e).__name__}: {e}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", type=Path, required=True,
                   help="directory with labels.json, train.json, validation.json [, test.json]")
    p.add_argument("--videos", type=Path, required=True, help="folder of the {id}.webm videos (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output directory (data.path_to_data_dir)")
    p.add_argument("--absolute", action="store_true", help="write absolute paths (default: relative to --videos)")
    p.add_argument("--separator", default=" ", help="path/label separator (data.path_label_separator), default ' '")
    p.add_argument("--extensions", default=",".join(VIDEO_EXTENSIONS), help="video file suffixes to index")
    p.add_argument("--extract-frames", type=Path, default=None, metavar="DIR",
                   help="also write each video as 30 fps JPEG frames DIR/{id}/{id}_%%06d.jpg; the lists name them")
    add_reencode_args(p)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes for --extract-frames / --reencode-short-side")
    return p.parse_args(argv)


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.annotations.is_dir():
        raise UserError(f"{args.annotations}: annotation directory not found")
    reencode = settings_from_args(args)
    if reencode is not None and args.extract_frames is not None:
        raise UserError("--reencode-short-side and --extract-frames: choose one (frames are extracted from the "
                        "originals; re-encoded copies are an alternative to them)")
    classes = read_ssv2_labels(args.annotations / "labels.json")
    splits = {}
    for split, name in _SPLIT_FILES.items():
        path = args.annotations / name
        if split == "test" and not path.is_file():
            continue  # test.json is optional
        splits[split] = read_ssv2_split(path, None if split == "test" else classes)
    index = index_videos(args.videos, [e for e in args.extensions.split(",") if e.strip()])
    print(f"indexed {len(index.by_stem)} video files under {args.videos}")
    root = index.root
    if reencode is not None:
        settings, folder = reencode
        wanted = sorted({vid for items in splits.values() for vid, _ in items if vid in index.by_stem})
        args.out.mkdir(parents=True, exist_ok=True)
        copies = reencode_tree([index.by_stem[vid] for vid in wanted], root, settings, folder, args.workers,
                               args.out / "reencode_failed.txt")
        # the lists name the copies; a video that could not be re-encoded is missing
        index.by_stem = {vid: copies[index.by_stem[vid]] for vid in wanted if index.by_stem[vid] in copies}
        root = folder
    if args.extract_frames is not None:
        wanted = {vid for items in splits.values() for vid, _ in items if vid in index.by_stem}
        jobs = [(index.by_stem[vid], args.extract_frames / vid) for vid in sorted(wanted)]
        failed = {}
        with ProcessPoolExecutor(max(1, args.workers)) as pool:
            for video, error in pool.map(_extract_one, jobs, chunksize=16):
                if error:
                    failed[Path(video).stem] = error
                    print(f"cannot extract {video}: {error}", file=sys.stderr)
        print(f"extracted {len(jobs) - len(failed)}/{len(jobs)} videos as 30 fps frames under {args.extract_frames}")
        # the lists now name the frame folders (a folder is one video to the ssv2 dataset)
        index.by_stem = {vid: args.extract_frames / vid for vid in wanted if vid not in failed}
        root = args.extract_frames

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text("".join(name + "\n" for name in classes), args.out / "classes.txt")
    print(f"{args.out / 'classes.txt'}: {len(classes)} classes")
    for split, items in splits.items():
        lines, missing = [], []
        for video_id, label in items:
            path = index.by_stem.get(video_id)
            if path is None:
                missing.append(video_id)
                continue
            rel = relative_or_absolute(path, root, args.absolute)
            lines.append(rel + "\n" if label is None else format_list_line(rel, label, args.separator))
        name = f"{split}.csv" if split != "test" else "test_unlabeled.txt"
        atomic_write_text("".join(lines), args.out / name)
        if split != "test":
            warn_separator_in_paths(lines, args.separator, args.out / name)
        missing_path = args.out / f"missing_{split}.txt"
        if missing:
            atomic_write_text("".join(m + "\n" for m in missing), missing_path)
        elif missing_path.exists():
            missing_path.unlink()  # a stale report from an earlier run would mislead
        report = f"{split}: {len(lines)}/{len(items)} videos found -> {args.out / name}"
        if missing:
            report += f"; {len(missing)} missing -> {missing_path}"
        print(report)
        if split == "val":
            # the test split of a run reads test.csv: SSv2's test labels are not public, it is tested on validation
            atomic_write_text("".join(lines), args.out / "test.csv")
            print(f"test: the validation videos -> {args.out / 'test.csv'} (the official test set has no labels)")
    command = train_command("ssv2", args.out, None if args.absolute else Path(root), len(classes), 174,
                            args.separator)
    print(f"use: {command}")
    return 0
