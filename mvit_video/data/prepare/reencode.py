"""Re-encode videos for fast training decodes: a smaller short side and a fixed keyframe interval (H.264 mp4).

Downloaded Kinetics videos are up to 1280x720 with keyframes seconds apart: every training clip decodes from the
keyframe before it, at full size, then the loader throws most pixels away (short side 256). A copy at short side
320 with a keyframe every 30 frames decodes a clip from at most 29 frames before it, at a ninth of the pixels.

`reencode_video` keeps every frame and the frame rate (so the frame count, duration and therefore PySlowFast's
frame indices stay those of the source; a variable-rate source becomes constant-rate at its average rate, which
is how PySlowFast's indices read it anyway), turns rotated videos upright, never upscales, and drops audio. It writes
`<dst>.part` first and renames it at the end, so an interrupted run never leaves a partial file under the final
name; `reencode_all` runs it in parallel, skips copies an earlier run finished (resumable), reports progress and
lists the videos that cannot be decoded instead of stopping. The originals are only read.

Used by `prepare_kinetics` and `prepare_ssv2` (`--reencode-short-side 320 --keyint 30 --workers N`); measured by
scripts/benchmark_reencode.py.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Sequence, TextIO

from mvit_video.utils.errors import UserError

__all__ = ["ReencodeSettings", "ReencodeResult", "scaled_size", "reencode_video", "reencode_all", "copy_paths",
           "reencode_tree", "check_reencode_dir", "add_reencode_args", "settings_from_args"]


@dataclass(frozen=True)
class ReencodeSettings:
    """How copies are encoded: short side in pixels, keyframe every `keyint` frames, x264 `crf` and `preset`."""

    short_side: int = 320
    keyint: int = 30
    crf: int = 23
    preset: str = "veryfast"


@dataclass(frozen=True)
class ReencodeResult:
    """One video: its source, its copy, "done" | "skipped" (an earlier run made it) | "failed", and the error."""

    src: str
    dst: str
    status: str
    error: str = ""
    frames: int = 0


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at `short_side` (never larger than the source), both even (yuv420p)."""
    short = min(width, height)
    scale = min(1.0, short_side / short) if short > 0 else 1.0

    def even(x: float) -> int:
        return max(2, 2 * int(round(x / 2)))

    return even(width * scale), even(height * scale)


def reencode_video(src: str | os.PathLike, dst: str | os.PathLike, settings: ReencodeSettings) -> int:
    """Write `src` as an H.264 mp4 `dst` with `settings` (see the module docstring); returns the frame count.
    Any decode failure raises; `dst` is then left untouched (the partial output is removed)."""
    import av
    import numpy as np

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part")
    frames = 0
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise ValueError("no video stream")
            vin = inp.streams.video[0]
            vin.thread_type, vin.thread_count = "AUTO", 1  # one core per worker: the workers use the machine
            rate = vin.average_rate or vin.guessed_rate or vin.base_rate
            if not rate:
                raise ValueError("unknown frame rate")
            rate = Fraction(rate).limit_denominator(1001 * 1000)
            with av.open(str(part), mode="w", format="mp4") as out:
                vout = out.add_stream("libx264", rate=rate)
                vout.pix_fmt = "yuv420p"
                # a fixed GOP: a keyframe every `keyint` frames and none in between (no scene-cut keyframes)
                vout.options = {"crf": str(settings.crf), "preset": settings.preset, "g": str(settings.keyint),
                                "keyint_min": str(settings.keyint), "sc_threshold": "0"}
                vout.codec_context.thread_count = 1
                size: Optional[tuple[int, int]] = None
                for frame in inp.decode(vin):
                    quarter_turns = int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
                    if quarter_turns:  # upright pixels: the copy carries no display matrix
                        frame = av.VideoFrame.from_ndarray(
                            np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), quarter_turns)),
                            format="rgb24")
                    if size is None:
                        size = scaled_size(frame.width, frame.height, settings.short_side)
                        vout.width, vout.height = size
                    # FFmpeg's default scaler (bicubic), as `ffmpeg -vf scale` would
                    img = frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="BICUBIC")
                    img.pts, img.time_base = frames, 1 / rate  # constant rate, every frame kept
                    for packet in vout.encode(img):
                        out.mux(packet)
                    frames += 1
                if frames == 0:
                    raise ValueError("no frame could be decoded")
                for packet in vout.encode():
                    out.mux(packet)
        os.replace(part, dst)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return frames


def _reencode_job(job: tuple[str, str, ReencodeSettings]) -> ReencodeResult:
    """Worker: one video; a failure becomes a result, so one bad file never stops the run."""
    src, dst, settings = job
    try:
        return ReencodeResult(src, dst, "done", frames=reencode_video(src, dst, settings))
    except Exception as e:
        msg = str(e).strip() or type(e).__name__
        return ReencodeResult(src, dst, "failed", error=f"{type(e).__name__}: {msg}".replace("\n", " "))


def reencode_all(
    jobs: Sequence[tuple[Path, Path]],
    settings: ReencodeSettings,
    workers: int = 1,
    log: Optional[TextIO] = None,
    progress_every_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> list[ReencodeResult]:
    """Re-encode each (src, dst) in `workers` processes (0: in this process); a `dst` that exists is an earlier
    run's finished copy and is skipped. Prints a start line, progress every `progress_every_s` seconds and a
    summary to `log` (default: stdout); returns one result per job, in job order."""
    log = log or sys.stdout
    results: dict[int, ReencodeResult] = {}
    todo = []
    for i, (src, dst) in enumerate(jobs):
        if Path(dst).is_file() and Path(dst).stat().st_size > 0:
            results[i] = ReencodeResult(str(src), str(dst), "skipped")
        else:
            todo.append((i, (str(src), str(dst), settings)))
    print(f"re-encoding {len(todo)} videos (short side {settings.short_side}, a keyframe every {settings.keyint} "
          f"frames, x264 crf {settings.crf}) with {max(workers, 1)} worker(s); {len(results)} done by an earlier run",
          file=log, flush=True)
    start = last = clock()
    failed = 0

    def report(done: int) -> None:
        elapsed = max(clock() - start, 1e-9)
        rate = done / elapsed
        eta = (len(todo) - done) / rate if rate > 0 else float("inf")
        print(f"re-encoded {done}/{len(todo)} ({failed} failed), {rate:.2f} videos/s, eta {eta / 60:.1f} min",
              file=log, flush=True)

    def collect(i: int, result: ReencodeResult) -> None:
        nonlocal failed, last
        results[i] = result
        if result.status == "failed":
            failed += 1
            print(f"cannot re-encode {result.src}: {result.error}", file=sys.stderr, flush=True)
        if clock() - last >= progress_every_s:
            last = clock()
            report(len(results) - (len(jobs) - len(todo)))

    if workers <= 0:
        for i, job in todo:
            collect(i, _reencode_job(job))
    else:
        with ProcessPoolExecutor(workers) as pool:
            pending = {pool.submit(_reencode_job, job): i for i, job in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    collect(pending.pop(future), future.result())
    if todo:
        report(len(todo))
    return [results[i] for i in range(len(jobs))]


def copy_paths(sources: Sequence[Path], root: Path, folder: Path) -> dict[Path, Path]:
    """Source -> copy path: the source's place under `root` mirrored under `folder`, as .mp4 (a name that two
    sources would share, a.webm and a.mkv, keeps its own suffix before .mp4)."""
    wanted = {src: folder / src.relative_to(root).with_suffix(".mp4") for src in sources}
    taken: dict[Path, int] = {}
    for dst in wanted.values():
        taken[dst] = taken.get(dst, 0) + 1
    return {src: (dst if taken[dst] == 1 else folder / (src.relative_to(root).as_posix() + ".mp4"))
            for src, dst in wanted.items()}


def reencode_tree(sources: Sequence[Path], root: Path, settings: ReencodeSettings, folder: Path, workers: int,
                  failed_report: Path, log: Optional[TextIO] = None) -> dict[Path, Path]:
    """Re-encode `sources` (files under `root`) into `folder`; returns source -> copy for those that have a copy.
    The ones that cannot be decoded are written to `failed_report` (`source<TAB>error` lines), which a run without
    failures removes."""
    from mvit_video.utils.io import atomic_write_text

    log = log or sys.stdout
    mapping = copy_paths(sorted(set(sources)), root, folder)
    results = reencode_all(list(mapping.items()), settings, workers, log)
    bad = [r for r in results if r.status == "failed"]
    if bad:
        atomic_write_text("".join(f"{r.src}\t{r.error}\n" for r in bad), failed_report)
        print(f"{len(bad)} videos could not be re-encoded (listed as missing) -> {failed_report}", file=log)
    elif failed_report.exists():
        failed_report.unlink()  # a stale report from an earlier run would mislead
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    print(f"copies under {folder}: {done} new, {skipped} from an earlier run, {len(bad)} failed", file=log)
    return {Path(r.src): Path(r.dst) for r in results if r.status != "failed"}


def check_reencode_dir(reencode_dir: Path, videos: Path) -> None:
    """The copies go outside the originals' tree: a later run indexes --videos recursively and would find them."""
    r, v = reencode_dir.resolve(), videos.resolve()
    if r == v or v in r.parents:
        raise UserError(f"--reencode-dir {reencode_dir}: inside --videos {videos}; choose a folder outside it "
                        f"(the originals are never modified, and a later run would index the copies as videos)")


def add_reencode_args(p) -> None:
    """The re-encoding options of the prepare commands (argparse parser `p`)."""
    p.add_argument("--reencode-short-side", type=int, default=0, metavar="PX",
                   help="write H.264 copies with this short side (e.g. 320; never upscaled) and a fixed keyframe "
                        "interval, and point the lists at them: much cheaper training decodes of 720p, long-GOP "
                        "downloads. Resumable; originals are only read")
    p.add_argument("--keyint", type=int, default=30, help="keyframe interval of the copies in frames (default 30)")
    p.add_argument("--crf", type=int, default=23, help="x264 quality of the copies (lower: better, larger; 23)")
    p.add_argument("--reencode-dir", type=Path, default=None, metavar="DIR",
                   help="where the copies go, mirroring --videos (default: <out>/videos_<PX>p_k<keyint>)")


def settings_from_args(args) -> Optional[tuple[ReencodeSettings, Path]]:
    """(settings, copies folder) from the parsed options, or None without --reencode-short-side."""
    if not args.reencode_short_side:
        return None
    if args.reencode_short_side < 16 or args.reencode_short_side % 2:
        raise UserError(f"--reencode-short-side: expected an even number of pixels >= 16, got "
                        f"{args.reencode_short_side}")
    if args.keyint < 1:
        raise UserError(f"--keyint: expected a positive number of frames, got {args.keyint}")
    if not 0 <= args.crf <= 51:
        raise UserError(f"--crf: expected 0..51, got {args.crf}")
    settings = ReencodeSettings(args.reencode_short_side, args.keyint, args.crf)
    folder = args.reencode_dir or args.out / f"videos_{settings.short_side}p_k{settings.keyint}"
    check_reencode_dir(folder, args.videos)
    return settings, folder
