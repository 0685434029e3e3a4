"""Fixtures for the data tests: single-threaded torch, and videos whose frames can be told apart one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import indexed_frames

from mvit_video.data.encode import write_video


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is much faster than two fighting over a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def indexed_videos(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray, float]]:
    """name -> (path, source frames, fps): mp4 (h264) and webm (vp9), and a 120-frame mp4 for seeking."""
    d = tmp_path_factory.mktemp("indexed")
    out = {}
    for name, n, fps in (("a.mp4", 60, 30.0), ("b.mp4", 45, 25.0), ("c.webm", 48, 30.0), ("long.mp4", 120, 30.0)):
        frames = indexed_frames(n, seed=len(out))
        write_video(d / name, frames, fps=fps)
        out[name] = (d / name, frames, fps)
    return out
