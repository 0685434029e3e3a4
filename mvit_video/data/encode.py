"""Write real encoded videos with PyAV (used by the synthetic dataset, benchmarks and tests)."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

# container suffix -> (codec, pixel format)
_CODECS = {".mp4": ("libx264", "yuv420p"), ".webm": ("libvpx-vp9", "yuv420p"), ".mkv": ("libx264", "yuv420p")}


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 30.0, crf: int = 18) -> None:
    """Encode `frames` (uint8 [T, H, W, 3], RGB; H and W even) into `path`; the suffix picks the codec."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _CODECS:
        raise ValueError(f"{path}: unsupported video suffix {suffix!r}; use one of {sorted(_CODECS)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    codec, pix_fmt = _CODECS[suffix]
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            # one encoder thread: the clips written here are tiny and gain nothing from threads. It does not make
            # lossy x264 reproducible on a busy machine (~1% of the videos still differed between runs); crf=0
            # (lossless, as the synthetic set uses) does
            stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        else:
            stream.options = {"crf": str(crf + 12), "b:v": "0", "deadline": "realtime", "cpu-used": "8", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
