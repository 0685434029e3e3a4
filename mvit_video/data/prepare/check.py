"""Dataset doctor: decode every video of a Kinetics-format list file and report what the loader would trip on.

For each listed video (in parallel, --workers processes) it opens the file with the same reader the training
loader uses (`mvit_video.data.decoding.open_video`, --decoder, PyAV fallback included) and decodes the first,
middle and last frame. It prints:
  - every unreadable video, one line `BAD <path>: <reason>` (missing, empty, truncated, not a video, ...),
  - min / median / max of duration (s), fps, frame count, height and width over the good videos,
  - a label histogram summary (classes present, videos per class min/median/max, the rarest classes;
    with --classes, also classes without any video and labels out of range),
and with --write-clean OUT writes the list with only the good videos (original lines, original order).

Exit code: 0 when every video is readable, 1 when some are not, 2 on a usage error (missing list file,
malformed line: `error: <file>:<line>: ...`).

Example:
  python scripts/check_dataset.py data/k400/train.csv --prefix /datasets/k400/videos --workers 16 \
      --write-clean data/k400/train_clean.csv
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mvit_video.data.lists import join_prefix, open_text, read_class_names, read_list_file
from mvit_video.utils.errors import UserError, cli_errors
from mvit_video.utils.io import atomic_write_text


@dataclass
class Entry:
    """One line of a list file."""

    lineno: int
    line: str  # as written, for --write-clean
    path: str  # with the prefix applied
    label: int


@dataclass
class Probe:
    """What decoding one video found."""

    ok: bool
    reason: str = ""
    num_frames: int = 0
    fps: float = 0.0
    duration: float = 0.0
    height: int = 0
    width: int = 0


def read_list(path: str | os.PathLike, separator: str = " ", prefix: str = "") -> list[Entry]:
    """Parse a list file exactly as the training loader does (data.path_label_separator, data.path_prefix; errors
    name file:line), keeping each entry's line for --write-clean."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: list file not found")
    paths, labels = read_list_file(str(path), separator)  # the loader's own parser: same rules, same errors
    raw_lines = [(n, raw) for n, raw in enumerate(open_text(path).splitlines(), start=1)
                 if raw.strip()]
    assert len(raw_lines) == len(paths)  # read_list_file keeps exactly the non-blank lines
    return [Entry(n, raw, join_prefix(prefix, p), label) for (n, raw), p, label in zip(raw_lines, paths, labels)]


def probe_video(path: str, decoder: str = "decord") -> Probe:
    """Open `path` and decode its first, middle and last frame; never raises."""
    from mvit_video.data.decoding import open_video  # imported in the worker: decord state is per process

    try:
        if os.path.isdir(path):  # an SSv2 frame folder (prepare_ssv2.py --extract-frames): one video
            from mvit_video.data.decoding import FrameFolderReader

            opened = FrameFolderReader(path)
        else:
            opened = open_video(path, decoder=decoder)
        with opened as reader:
            n = int(reader.num_frames)
            frames = reader.get_frames(sorted({0, n // 2, n - 1}))
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] == 0 or frames.shape[2] == 0:
                return Probe(False, f"decoded frames have shape {tuple(frames.shape)}")
            return Probe(True, "", n, float(reader.fps), float(reader.duration), int(frames.shape[1]),
                         int(frames.shape[2]))
    except Exception as e:  # the doctor reports every failure; VideoDecodeError messages start with the path
        msg = str(e).replace(f": '{path}'", "")  # the path is printed once, in front of the reason
        if msg.startswith(path + ": "):
            msg = msg[len(path) + 2:]
        return Probe(False, msg or type(e).__name__)


def _probe_task(args: tuple[int, str, str]) -> tuple[int, Probe]:
    i, path, decoder = args
    return i, probe_video(path, decoder)


def probe_all(paths: Sequence[str], decoder: str, workers: int, progress: bool = False) -> list[Probe]:
    """Probe every path, in `workers` processes (0 = in this process); results in input order."""
    results: list[Probe | None] = [None] * len(paths)
    tasks = [(i, p, decoder) for i, p in enumerate(paths)]
    from tqdm import tqdm

    bar = tqdm(total=len(paths), unit="video", disable=not progress, file=sys.stderr)
    if workers <= 0:
        for task in tasks:
            i, probe = _probe_task(task)
            results[i] = probe
            bar.update()
    else:
        chunksize = max(1, min(16, len(tasks) // (8 * workers)))  # small chunks: one slow file does not stall a batch
        with mp.Pool(workers) as pool:
            for i, probe in pool.imap_unordered(_probe_task, tasks, chunksize=chunksize):
                results[i] = probe
                bar.update()
    bar.close()
    return results  # type: ignore[return-value]


def _stats_line(name: str, values: Sequence[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return f"  {name:<10} -"
    lo, med, hi = min(values), statistics.median(values), max(values)
    return f"  {name:<10} min {fmt.format(lo):>8}  median {fmt.format(med):>8}  max {fmt.format(hi):>8}"


def label_summary(labels: Sequence[int], class_names: Sequence[str] | None) -> list[str]:
    """Human-readable label histogram summary lines."""
    counts = Counter(labels)
    lines = [f"labels: {len(counts)} classes present"]
    per_class = sorted(counts.values())
    lines.append(_stats_line("per class", per_class, "{:.0f}"))
    def name(c: int) -> str:
        return f"{c} ({class_names[c]})" if class_names and 0 <= c < len(class_names) else str(c)
    rare = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))[:5]
    lines.append("  rarest: " + ", ".join(f"{name(c)}: {n}" for c, n in rare))
    if class_names is not None:
        absent = [c for c in range(len(class_names)) if c not in counts]
        out_of_range = sorted(c for c in counts if not 0 <= c < len(class_names))
        if absent:
            lines.append(f"  {len(absent)} of {len(class_names)} classes have no video: "
                         + ", ".join(name(c) for c in absent[:10]) + (" ..." if len(absent) > 10 else ""))
        if out_of_range:
            lines.append(f"  labels out of range [0, {len(class_names)}): {out_of_range[:10]}")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("list", type=Path, help="list file (`path label` lines), e.g. train.csv")
    p.add_argument("--separator", default=" ", help="path/label separator (data.path_label_separator)")
    p.add_argument("--prefix", default="", help="prepended to relative paths (data.path_prefix)")
    p.add_argument("--decoder", default="decord", choices=("decord", "pyav"), help="reader to test (data.decoder)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="decoding processes (0 = in this process)")
    p.add_argument("--classes", type=Path, help="classes.txt (one name per line) for names and absent classes")
    p.add_argument("--write-clean", type=Path, metavar="OUT", help="write the list with only the good videos")
    p.add_argument("--progress", action="store_true", default=None, help="progress bar (default: when a terminal)")
    return p.parse_args(argv)


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    entries = read_list(args.list, args.separator, args.prefix)
    class_names = None
    if args.classes is not None:
        class_names = read_class_names(args.classes)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    t0 = time.perf_counter()
    probes = probe_all([e.path for e in entries], args.decoder, args.workers, progress)
    elapsed = time.perf_counter() - t0

    bad = [(e, p) for e, p in zip(entries, probes) if not p.ok]
    good = [p for p in probes if p.ok]
    for e, p in bad:
        print(f"BAD {e.path}: {p.reason}  ({args.list}:{e.lineno})")
    print(f"{args.list}: {len(entries)} videos, {len(good)} readable, {len(bad)} unreadable "
          f"({elapsed:.1f} s, {len(entries) / max(elapsed, 1e-9):.1f} videos/s, decoder {args.decoder})")
    if bad:
        reasons = Counter(_reason_kind(p.reason) for _, p in bad)
        print("  reasons: " + ", ".join(f"{k}: {n}" for k, n in reasons.most_common()))
        missing = sum(1 for _, p in bad if _reason_kind(p.reason) == "no such file")
        if missing == len(entries):
            hint = ("forgot --prefix?" if not args.prefix
                    else f"is --prefix {args.prefix} the folder the list's paths are relative to?")
            print(f"{len(entries) - missing}/{len(entries)} found: {hint} (first path tried: {entries[0].path})")
    print("good videos:")
    print(_stats_line("duration s", [p.duration for p in good]))
    print(_stats_line("fps", [p.fps for p in good]))
    print(_stats_line("frames", [p.num_frames for p in good], "{:.0f}"))
    print(_stats_line("height", [p.height for p in good], "{:.0f}"))
    print(_stats_line("width", [p.width for p in good], "{:.0f}"))
    print("\n".join(label_summary([e.label for e in entries], class_names)))
    if args.write_clean is not None:
        if args.write_clean.resolve() == args.list.resolve():
            raise UserError(f"{args.write_clean}: --write-clean would overwrite the list being checked")
        clean = [e.line.rstrip("\n") + "\n" for e, p in zip(entries, probes) if p.ok]
        atomic_write_text("".join(clean), args.write_clean)
        print(f"wrote {len(clean)} good videos to {args.write_clean}")
    return 1 if bad else 0


def _reason_kind(reason: str) -> str:
    """A coarse bucket for the reason summary (the full reasons are printed per video)."""
    r = reason.lower()
    for key in ("no such file", "empty file", "no video stream", "no video frames", "truncated", "cannot open"):
        if key in r:
            return key
    return reason.split("(")[0].strip()[:60] or "other"
