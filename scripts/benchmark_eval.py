#!/usr/bin/env python
"""Decode cost of multi-view testing: each video decoded once for its K views vs. once per view.

    python scripts/benchmark_eval.py                      # 8 videos of 10 s at 340x256, K=5 views, both decoders
    python scripts/benchmark_eval.py --views 5 --crops 3 --decoders pyav --repeats 3

Generates (once, cached) a list of h264 videos, then builds each video's test views in this process (one thread,
so the time is the decoding itself) from the library's public pieces -- `data.clips.open_reader`, `view_indices`,
`views` (what the test dataset does: all views from one decode) and `views_of_frames` -- and reports per video:
seconds spent opening and decoding (`decode-s`), total seconds (decode + resize/crop/normalise), and the ratio
decode-per-view / decode-once (target >= 0.8 x K). "decode per view" decodes each view's frames on their own from
one open file. Two PySlowFast-like baselines follow: "reopen per view" opens the file again for every view (its
test set holds one entry per view), "whole per view" decodes the entire video for every view (what PySlowFast's
PyAV path does when the stream header has no duration). To explain the ratio it prints the frames each mode has
to decode, from the keyframe positions: a seek lands on the keyframe before a clip and decoding runs forward from
there, so decode cost follows the frames decoded, not the frames kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvit_video.config import build_config, compose
from mvit_video.data import build_dataset
from mvit_video.data.clips import ClipSpec, open_reader, view_indices, views, views_of_frames
from mvit_video.data.decoding import HAS_DECORD
from mvit_video.data.encode import write_video
from mvit_video.data.sampling import concat_indices, union_indices
from mvit_video.settings import RunConfig


def make_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 [T,H,W,3]: a panning textured background with moving shapes (compresses like real footage, not noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0 : width * 2].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    bg = np.stack([128 + 60 * np.sin(xx / (17 + 5 * c) + yy / (23 + 3 * c) + phase[c]) for c in range(3)], -1)
    bg += rng.normal(0, 6, size=bg.shape)  # fine grain: keeps the encoder (and decoder) honest
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        x0 = (2 * t) % width
        f = bg[:, x0 : x0 + width].copy()
        for k in range(3):  # three squares on their own paths
            cx = int((width - 40) * (0.5 + 0.5 * np.sin(0.03 * t * (k + 1) + phase[k])))
            cy = int((height - 40) * (0.5 + 0.5 * np.cos(0.02 * t * (k + 2) + phase[k])))
            f[cy : cy + 40, cx : cx + 40] = 255 * (np.arange(3) == k)
        frames[t] = np.clip(f, 0, 255)
    return frames


def ensure_videos(root: Path, count: int, seconds: float, width: int, height: int, fps: float) -> Path:
    """`root/<settings>/` with test.csv over `count` videos (generated on the first call only)."""
    settings = {"count": count, "seconds": seconds, "width": width, "height": height, "fps": fps, "version": 1}
    d = root / f"n{count}_{seconds:g}s_{width}x{height}_{fps:g}fps"
    marker = d / "settings.json"
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return d
    (d / "videos").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        name = f"video_{i:03d}.mp4"
        print(f"writing {d / 'videos' / name}", file=sys.stderr)
        write_video(d / "videos" / name, make_frames(round(seconds * fps), height, width, seed=i), fps=fps)
        lines.append(f"{name} {i % 2}")
    (d / "test.csv").write_text("\n".join(lines) + "\n")
    marker.write_text(json.dumps(settings))
    return d


class _TimedReader:
    """Reader proxy that adds the seconds spent in get_frames to a shared counter."""

    def __init__(self, reader: Any, clock: dict[str, float]) -> None:
        self._reader, self._clock = reader, clock
        self.num_frames, self.fps = reader.num_frames, reader.fps

    def get_frames(self, indices):
        t = time.perf_counter()
        try:
            return self._reader.get_frames(indices)
        finally:
            self._clock["decode"] += time.perf_counter() - t

    def close(self) -> None:
        self._reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def timed_open(path: str, spec: ClipSpec, clock: dict[str, float]) -> _TimedReader:
    """open_reader, with the seconds spent opening and decoding added to clock["decode"]."""
    t = time.perf_counter()
    reader = open_reader(path, spec)
    clock["decode"] += time.perf_counter() - t
    return _TimedReader(reader, clock)


def mode_views(path: str, spec: ClipSpec, mode: str, clock: dict[str, float]) -> torch.Tensor:
    """The test views of one video in `mode` (once | per_view | reopen | whole); all modes give the same views."""
    if mode == "once":  # the library's path: the union of the views' frames in one pass (the test dataset's)
        with timed_open(path, spec, clock) as reader:
            return views(reader, spec)
    with timed_open(path, spec, clock) as reader:
        per_view = view_indices(spec, reader.num_frames, reader.fps)
        if mode == "per_view":  # each view decoded on its own, one open file
            parts = [reader.get_frames(idx) for idx in per_view]
    if mode != "per_view":
        parts = []
        for idx in per_view:  # PySlowFast: every view opens (and seeks in) the file anew
            with timed_open(path, spec, clock) as reader:
                # "whole": PySlowFast when the stream has no duration in its header, the whole video per view
                parts.append(reader.get_frames(range(reader.num_frames))[idx] if mode == "whole"
                             else reader.get_frames(idx))
    return views_of_frames(torch.cat(parts), concat_indices([len(p) for p in parts]), spec)


def run_mode(cfg: RunConfig, mode: str) -> dict[str, float]:
    """Build every test video's views once in `mode`; seconds per video (decode, and the whole item)."""
    clock = {"decode": 0.0}
    dataset = build_dataset(cfg, "test")  # for its list and its ClipSpec only
    start = time.perf_counter()
    for path in dataset.full_paths:
        mode_views(path, dataset.spec, mode, clock)
    total = time.perf_counter() - start
    n = len(dataset)
    return {"decode_s": clock["decode"] / n, "item_s": total / n}


def _span(keys: list[int], idx: list[int]) -> int:
    """Frames decoded to get `idx`: from the keyframe at or before the first one up to the last one."""
    k = max([k for k in keys if k <= min(idx)], default=0)
    return max(idx) - k + 1


def decode_work(cfg: RunConfig, video_dir: Path, paths: list[str]) -> dict[str, float]:
    """Frames a forward-decoding reader must decode per video: union from its first keyframe vs. each view alone."""
    import decord

    once = per_view = needed = 0
    keyframes = []
    dataset = build_dataset(cfg, "test")
    for p in paths:
        vr = decord.VideoReader(str(video_dir / p))
        keys = sorted(vr.get_key_indices())
        keyframes.append(len(keys))
        per_clip = view_indices(dataset.spec, len(vr), vr.get_avg_fps())

        once += _span(keys, union_indices(per_clip)[0])
        per_view += sum(_span(keys, v) for v in per_clip)
        needed += sum(len(set(v)) for v in per_clip)
    n = len(paths)
    return {"keyframes": sum(keyframes) / n, "once": once / n, "per_view": per_view / n, "sampled": needed / n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path.home() / ".cache" / "mvit_video" / "benchmark_eval")
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--size", default="340x256", help="WIDTHxHEIGHT of the generated videos")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--views", type=int, default=5, help="K temporal views")
    p.add_argument("--crops", type=int, default=1, choices=[1, 3], help="S spatial crops")
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--sampling-rate", type=int, default=4)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--decoders", nargs="+", default=["decord", "pyav"] if HAS_DECORD else ["pyav"])
    p.add_argument("--repeats", type=int, default=3, help="passes per mode; the fastest pass is reported")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    width, height = (int(x) for x in args.size.lower().split("x"))
    root = ensure_videos(args.root, args.videos, args.seconds, width, height, args.fps)
    paths = [line.split()[0] for line in (root / "test.csv").read_text().splitlines()]

    k = args.views
    print(f"{args.videos} videos of {args.seconds:g} s at {width}x{height} {args.fps:g} fps (h264), "
          f"{k}x{args.crops} views of {args.num_frames}x{args.sampling_rate} frames at {args.crop} px; "
          f"in this process, 1 thread; fastest of {args.repeats} passes")
    for decoder in args.decoders:
        cfg = build_config(compose([
            "data=kinetics", f"data.path_to_data_dir={root}", f"data.path_prefix={root / 'videos'}",
            f"data.decoder={decoder}", f"data.num_frames={args.num_frames}", f"data.sampling_rate={args.sampling_rate}",
            f"data.test_crop_size={args.crop}", f"data.train_crop_size={args.crop}",
            f"test.num_ensemble_views={k}", f"test.num_spatial_crops={args.crops}", "test.batch_size=1",
            "data_loader.num_workers=0", "data_loader.pin_memory=false", "data_loader.decoder_threads=1",
        ]))
        modes = ["once", "per_view", "reopen", "whole"]
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for _ in range(args.repeats):  # interleaved, so a burst of load on the machine hits every mode alike
            for m in modes:
                runs[m].append(run_mode(cfg, m))
        best = {m: min(r, key=lambda x: x["decode_s"]) for m, r in runs.items()}
        print(f"\ndecoder {decoder}:")
        print(f"  {'mode':<16} {'decode-s/video':>15} {'item-s/video':>13} {'decode ratio':>13}")
        labels = ["decode once", "decode per view", "reopen per view", "whole per view"]
        for m, label in zip(modes, labels):
            ratio = best[m]["decode_s"] / best["once"]["decode_s"]
            spread = statistics.pstdev(r["decode_s"] for r in runs[m]) if len(runs[m]) > 1 else 0.0
            print(f"  {label:<16} {best[m]['decode_s']:>11.3f} ±{spread:.3f} {best[m]['item_s']:>13.3f} "
                  f"{ratio:>12.2f}x")
        target = 0.8 * k
        got = best["per_view"]["decode_s"] / best["once"]["decode_s"]
        print(f"  decode-once saving vs per-view: {got:.2f}x (target >= {target:.1f}x: "
              f"{'met' if got >= target else 'missed'})")
    if HAS_DECORD:
        cfg = build_config(compose(["data=kinetics", f"data.path_to_data_dir={root}",
                                    f"data.num_frames={args.num_frames}", f"data.sampling_rate={args.sampling_rate}",
                                    f"test.num_ensemble_views={k}"]))
        w = decode_work(cfg, root / "videos", paths)
        print(f"\nframes to decode per video (keyframes per video: {w['keyframes']:.1f}; frames sampled by the views: "
              f"{w['sampled']:.0f}): decode once {w['once']:.0f}, per view {w['per_view']:.0f} "
              f"-> ideal ratio {w['per_view'] / w['once']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
