#!/usr/bin/env python
"""Decode cost of a training clip before and after re-encoding (prepare_* --reencode-short-side / --keyint).

Generates --num-videos videos like real Kinetics downloads (default 1280x720, 10 s at 30 fps, H.264 with a
keyframe only every --gop frames, cached in a temp dir), re-encodes them with mvit_video.data.prepare.reencode
(--short-side, --keyint), then for each source and decoder decodes --clips training clips per video with the
frame indices a training item would use (sampling.train_clip_indices of the --frames x --rate recipe, seeded, the
same indices for both copies: the frame count is kept), opening the video per clip as a loader worker does. It
reports CPU seconds per clip (this process's user + system time: decoder threads included; one decoder thread,
one torch thread) for the decode alone and for decode + the short-side resize to --decode-short-side that the
Kinetics pipeline does next, and the ratio original / re-encoded. Also: the one-time re-encoding cost per video
and the file sizes.

Example:  python scripts/benchmark_reencode.py --num-videos 3 --clips 8
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av  # before decord (mvit_video.data.decoding explains why)
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mvit_video.data import sampling  # noqa: E402
from mvit_video.data.decoding import HAS_DECORD, open_video  # noqa: E402
from mvit_video.data.prepare.reencode import ReencodeSettings, reencode_video  # noqa: E402
from mvit_video.data.transforms import short_side_resize  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all its threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_long_gop_video(path: Path, width: int, height: int, seconds: float, fps: float, gop: int,
                         seed: int) -> None:
    """A camera-like H.264 mp4, written frame by frame: a smooth scene with fine detail, seen through a slow
    zoom and pan (every pixel moves by a different amount, as with a real camera), plus sensor noise; a keyframe
    every `gop` frames only (no scene-cut keyframes), x264 veryfast crf 23 (about 2-3 Mbit/s at 720p, in the range
    of Kinetics' YouTube downloads)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    tex_h, tex_w = 2 * height, 2 * width
    coarse = rng.integers(0, 256, (tex_h // 24, tex_w // 24, 3), dtype=np.uint8)
    scene = np.asarray(Image.fromarray(coarse).resize((tex_w, tex_h), Image.BICUBIC), dtype=np.int16)
    scene = np.clip(scene + rng.integers(-12, 13, (tex_h, tex_w, 1), dtype=np.int16), 0, 255).astype(np.uint8)
    num = int(round(seconds * fps))
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "g": str(gop), "keyint_min": str(gop),
                          "sc_threshold": "0"}
        for t in range(num):
            zoom = 1.0 + 0.6 * t / max(num - 1, 1)  # field of view shrinks from the full to 1/1.6 of the scene
            view_h, view_w = tex_h / 2 * 1.9 / zoom, tex_w / 2 * 1.9 / zoom
            y0 = (tex_h - view_h) * (0.5 + 0.4 * np.sin(t / 47.0))
            x0 = (tex_w - view_w) * (0.5 + 0.4 * np.cos(t / 61.0))
            rows = (y0 + np.arange(height) * view_h / height).astype(np.int64)
            cols = (x0 + np.arange(width) * view_w / width).astype(np.int64)
            frame = scene[rows[:, None], cols[None, :]]
            frame = np.clip(frame + rng.integers(-3, 4, frame.shape[:2] + (1,), dtype=np.int16), 0, 255)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)


def decode_clips(paths: Sequence[Path], clips: list[list[list[int]]], decoder: str, resize: int) -> tuple[float, float]:
    """(CPU s per clip of the decode, of decode + short-side resize): each clip opens its video afresh."""
    decode = resized = 0.0
    n = 0
    for path, per_video in zip(paths, clips):
        for indices in per_video:
            start = cpu_seconds()
            with open_video(path, decoder, 1) as reader:
                frames = reader.get_frames(indices)
            mid = cpu_seconds()
            short_side_resize(frames.permute(0, 3, 1, 2), resize)
            end = cpu_seconds()
            decode += mid - start
            resized += end - start
            n += 1
    return decode / n, resized / n


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-videos", type=int, default=3)
    p.add_argument("--size", default="1280x720", help="source WIDTHxHEIGHT")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--gop", type=int, default=250, help="source keyframe interval (x264's default: 250)")
    p.add_argument("--short-side", type=int, default=320, help="re-encoded short side")
    p.add_argument("--keyint", type=int, default=30, help="re-encoded keyframe interval")
    p.add_argument("--frames", type=int, default=32, help="clip frames (k400_b_32x3: 32)")
    p.add_argument("--rate", type=int, default=3, help="clip sampling rate (k400_b_32x3: 3)")
    p.add_argument("--decode-short-side", type=int, default=256, help="the pipeline's resize after the decode")
    p.add_argument("--clips", type=int, default=8, help="training clips per video")
    p.add_argument("--decoders", nargs="+", default=["decord", "pyav"] if HAS_DECORD else ["pyav"])
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mvit_video_bench_reencode")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    width, height = (int(v) for v in args.size.lower().split("x"))
    root = args.cache / f"{width}x{height}_{args.seconds:g}s_{args.fps:g}fps_g{args.gop}"
    root.mkdir(parents=True, exist_ok=True)
    sources = [root / f"v{i}.mp4" for i in range(args.num_videos)]
    for i, path in enumerate(sources):
        if not path.is_file():
            print(f"writing {path} ({width}x{height}, keyframe every {args.gop} frames)", file=sys.stderr)
            write_long_gop_video(path, width, height, args.seconds, args.fps, args.gop, seed=i)
    settings = ReencodeSettings(args.short_side, args.keyint)
    copies = [root / f"s{args.short_side}_k{args.keyint}" / p.name for p in sources]
    encode_cpu = []
    for src, dst in zip(sources, copies):
        start = cpu_seconds()
        dst.unlink(missing_ok=True)
        reencode_video(src, dst, settings)
        encode_cpu.append(cpu_seconds() - start)

    rng = random.Random(args.seed)
    clips = []
    for path in sources:
        with open_video(path, "pyav") as reader:
            n, fps = reader.num_frames, reader.fps
        clips.append([sampling.train_clip_indices(n, fps, args.frames, args.rate, 30.0, rng=rng)
                      for _ in range(args.clips)])
    for src, dst in zip(sources, copies):  # the copies keep every frame: the same indices are valid
        with open_video(src, "pyav") as a, open_video(dst, "pyav") as b:
            assert (a.num_frames, a.fps) == (b.num_frames, b.fps), (src, a.num_frames, b.num_frames)
    with open_video(copies[0], "pyav") as reader:
        small = reader.get_frames([0]).shape[1:3]

    print(f"benchmark_reencode: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, PyAV {av.__version__}")
    print(f"{args.num_videos} videos {width}x{height} {args.seconds:g} s {args.fps:g} fps, keyframe every {args.gop}; "
          f"copies {small[1]}x{small[0]}, keyframe every {args.keyint}; {args.clips} clips/video of "
          f"{args.frames}x{args.rate} (span {args.frames * args.rate} frames at 30 fps); CPU s per clip, one "
          f"decoder thread")
    size_src = sum(p.stat().st_size for p in sources) / len(sources) / 1e6
    size_dst = sum(p.stat().st_size for p in copies) / len(copies) / 1e6
    print(f"file size per video: {size_src:.2f} MB ({size_src * 8 / args.seconds:.1f} Mbit/s) -> {size_dst:.2f} MB "
          f"({size_dst * 8 / args.seconds:.1f} Mbit/s); re-encoding: "
          f"{sum(encode_cpu) / len(encode_cpu):.2f} CPU s per video (once)")
    print(f"{'decoder':8} {'source':>24} {'decode':>9} {'+resize':>9}")
    for decoder in args.decoders:
        before = decode_clips(sources, clips, decoder, args.decode_short_side)
        after = decode_clips(copies, clips, decoder, args.decode_short_side)
        print(f"{decoder:8} {f'{width}x{height} g{args.gop}':>24} {before[0]:9.3f} {before[1]:9.3f}")
        print(f"{decoder:8} {f're-encoded k{args.keyint}':>24} {after[0]:9.3f} {after[1]:9.3f}")
        print(f"{decoder:8} {'ratio original/copy':>24} {before[0] / after[0]:8.1f}x {before[1] / after[1]:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
