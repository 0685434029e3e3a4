"""Shared fixtures: tiny real videos written with PyAV, and a tiny Kinetics-format list over them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mvit_video.data.encode import write_video

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def moving_square_frames(num_frames: int, height: int = 64, width: int = 80, seed: int = 0) -> np.ndarray:
    """Frames whose content differs per frame (a moving square over a gradient), uint8 [T, H, W, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 3) % 256, (yy * 3) % 256, ((xx + yy) * 2) % 256], axis=-1).astype(np.uint8)
    frames = np.repeat(base[None], num_frames, axis=0).copy()
    color = rng.integers(0, 256, size=3, dtype=np.uint8)
    for t in range(num_frames):
        x = (t * 2) % max(1, width - 12)
        frames[t, 10:22, x : x + 12] = color
        frames[t, 0:4, 0:4] = (t * 7) % 256  # frame id in a corner: decoders can be checked index by index
    return frames


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    """A directory with a few real encoded videos: mp4 (h264) and webm (vp9), of several lengths and rates."""
    d = tmp_path_factory.mktemp("videos")
    specs = [("a.mp4", 60, 30.0), ("b.mp4", 90, 25.0), ("c.webm", 48, 30.0), ("short.mp4", 10, 30.0)]
    for i, (name, n, fps) in enumerate(specs):
        write_video(d / name, moving_square_frames(n, seed=i), fps=fps)
    (d / "empty.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(b"this is not a video" * 100)
    return d


@pytest.fixture(scope="session")
def kinetics_list_dir(video_dir, tmp_path_factory) -> Path:
    """PySlowFast-format lists train/val/test.csv (`path label`) over the good videos of `video_dir`."""
    d = tmp_path_factory.mktemp("lists")
    good = ["a.mp4", "b.mp4", "c.webm", "short.mp4"]
    lines = [f"{video_dir / name} {i % 2}" for i, name in enumerate(good)]
    for split in ("train", "val", "test"):
        (d / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return d
