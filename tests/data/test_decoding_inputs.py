"""Inputs that are not plain video files: a FIFO or a device named as a video, an encoded file in memory."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mvit_video.data.decoding import FramesReader, VideoDecodeError, open_video, open_video_bytes
from mvit_video.data.encode import write_video


def test_a_fifo_or_device_is_not_a_regular_file(tmp_path) -> None:
    """Said as such (not "empty file"), and at once: a decoder opening a FIFO would wait for a writer forever."""
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO"), ("/dev/null", "a device or socket")):
        for decoder in ("decord", "pyav"):
            with pytest.raises(VideoDecodeError, match=f"^{path}: not a regular file \\({kind}\\)"):
                open_video(path, decoder)


def test_bytes_in_memory_decode_like_the_file(tmp_path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)
    path = tmp_path / "v.mp4"
    write_video(path, frames, fps=25.0)
    with open_video(path, "pyav") as from_file, open_video_bytes(path.read_bytes(), name="upload") as from_bytes:
        assert (from_bytes.num_frames, from_bytes.fps, from_bytes.path) == (6, 25.0, "upload")
        assert torch.equal(from_bytes.get_frames([5, 0, 3]), from_file.get_frames([5, 0, 3]))
    with pytest.raises(VideoDecodeError, match="^upload: cannot decode the bytes"):
        open_video_bytes(path.read_bytes()[:200], name="upload").get_frames([0])
    reader = FramesReader(torch.from_numpy(frames), 25.0)
    assert torch.equal(reader.get_frames([9, 1]), torch.from_numpy(frames[[5, 1]]))  # clamped, as file readers
