"""Fixtures for the data tests: single-threaded torch, and videos whose frames can be told apart one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import indexed_frames

from mvit_video.data.encode import write_video


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is much faster than two fighting over a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def indexed_videos(videos, tmp_path_factory) -> dict[str, tuple[Path, np.ndarray, float]]:
    """name -> (path, source frames, fps): the shared `videos`, and a 120-frame mp4 for seeking."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    frames = indexed_frames(120, seed=len(videos))
    write_video(path, frames, fps=30.0)
    return {**videos, "long.mp4": (path, frames, 30.0)}
