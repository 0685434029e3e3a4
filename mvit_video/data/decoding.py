"""Video readers that decode only the frames asked for: decord by default, PyAV as the automatic fallback; a
folder of JPEG frames (SSv2's extracted layout) and a reader resampled to a frame grid (SSv2's 30 fps).

`open_video(path)` returns a reader with `.num_frames`, `.fps`, `.duration` and `.get_frames(indices)` ->
uint8 Tensor[T, H, W, 3] (RGB, in the order of `indices`, repeats allowed). Any missing, empty, truncated or
undecodable file raises `VideoDecodeError` naming the path. `open_video_bytes` decodes an encoded file held in
memory (PyAV), `FramesReader` serves frames already decoded.
"""

from __future__ import annotations

import abc
import bisect
import contextlib
import io
import logging
import os
import re
import stat
import sys
import tempfile
from fractions import Fraction
from typing import Iterator, Optional, Sequence

import av  # must be imported BEFORE decord, see below
import numpy as np
import torch

from mvit_video.data.sampling import frame_grid
from mvit_video.utils.errors import UserError

logger = logging.getLogger(__name__)

# decord is optional: PyAV covers everything it does. It is imported AFTER PyAV on purpose: decord's bundled FFmpeg
# libraries, when loaded first, take over symbols PyAV resolves later, and PyAV's libvpx (webm) encoder then fails
# to open with EINVAL (tests and the synthetic set encode videos with PyAV).
try:
    import decord

    decord.bridge.set_bridge("native")
    # decord's FFmpeg prints its own lines ("[matroska @ 0x..] Read error") to stderr for every bad file; the
    # reader raises VideoDecodeError naming the file instead, and the run reports it once.
    decord.logging.set_level(decord.logging.QUIET)
except Exception:  # pragma: no cover - depends on the install
    decord = None

__all__ = ["VideoDecodeError", "VideoReader", "DecordReader", "PyAVReader", "FrameGridReader", "FrameFolderReader",
           "FramesReader", "open_video", "open_video_bytes", "local_path", "HAS_DECORD"]

HAS_DECORD = decord is not None


class VideoDecodeError(UserError):
    """A video that cannot be read: missing, empty, truncated or not a video. The message starts with the path."""


def local_path(path: str) -> str:
    """A local filesystem path for `path`: local paths as they are, other URIs fetched through iopath's cache."""
    if "://" not in path or path.startswith("file://"):
        return path[len("file://") :] if path.startswith("file://") else path
    from iopath.common.file_io import g_pathmgr  # imported lazily: only remote paths need it

    try:
        return g_pathmgr.get_local_path(path)
    except Exception as e:
        raise VideoDecodeError(f"{path}: cannot fetch ({type(e).__name__}: {e})") from e


class VideoReader(abc.ABC):
    """Common interface; subclasses decode. `indices` beyond the decodable end repeat the last frame."""

    path: str
    num_frames: int
    fps: float

    @property
    def duration(self) -> float:
        """Length in seconds (num_frames / fps)."""
        return self.num_frames / self.fps if self.fps > 0 else 0.0

    @abc.abstractmethod
    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 Tensor[len(indices), H, W, 3] (RGB)."""

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_DECORD_LOG_LINE = re.compile(rb"^\[\d\d:\d\d:\d\d\] \S+\.cc:\d+: ")  # "[19:01:56] .../video_reader.cc:83: ERROR ..."


@contextlib.contextmanager
def _without_decord_log_lines() -> Iterator[None]:
    """Drop the lines decord's C++ logger writes straight to file descriptor 2 ("ERROR opening: <file>") while
    it opens a file: the caller raises a VideoDecodeError naming the file instead. Anything else written to
    stderr meanwhile is passed on."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = b"".join(ln for ln in capture.read().splitlines(keepends=True) if not _DECORD_LOG_LINE.match(ln))
            if kept:
                os.write(2, kept)


class DecordReader(VideoReader):
    """decord.VideoReader: frame-accurate `get_batch` (seeks to the keyframe, decodes forward)."""

    name = "decord"

    def __init__(self, path: str, num_threads: int = 1) -> None:
        self.path = path
        with _without_decord_log_lines():
            self._vr = decord.VideoReader(local_path(path), num_threads=num_threads)
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())
        if self.num_frames <= 0:
            raise VideoDecodeError(f"{path}: no video frames")

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        idx = _checked(indices, self.num_frames, self.path)
        uniq = sorted(set(idx))
        # decord decodes a sorted unique batch fastest; gather repeats afterwards
        batch = self._vr.get_batch(uniq).asnumpy()
        pos = {f: i for i, f in enumerate(uniq)}
        return torch.from_numpy(batch[[pos[i] for i in idx]])

    def close(self) -> None:
        self._vr = None


class PyAVReader(VideoReader):
    """PyAV: seek to the keyframe before the first needed frame, decode forward, stop after the last one."""

    name = "pyav"

    def __init__(self, path: str, num_threads: int = 1, source: io.BytesIO | None = None) -> None:
        self.path = path
        # `source`: the encoded file in memory (`path` then only names it in messages)
        self._container = av.open(source if source is not None else local_path(path))
        if not self._container.streams.video:
            self._container.close()
            raise VideoDecodeError(f"{path}: no video stream")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = max(1, num_threads)
        self._stream = stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            self._container.close()
            raise VideoDecodeError(f"{path}: unknown frame rate")
        self._rate = Fraction(rate)
        self.fps = float(rate)
        self._tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1_000_000)
        self._start = stream.start_time or 0
        if stream.frames and stream.frames > 0:
            self.num_frames = int(stream.frames)
        else:  # e.g. webm (VP9): no frame count in the header, derive it from the duration
            if stream.duration:
                seconds = float(stream.duration * self._tb)
            else:
                seconds = (self._container.duration or 0) / av.time_base
            self.num_frames = int(round(seconds * self.fps))
        if self.num_frames <= 0:
            self._container.close()
            raise VideoDecodeError(f"{path}: no video frames")

    def _frame_index(self, pts: int) -> int:
        """Index of the frame with timestamp `pts` (constant frame rate, as PySlowFast assumes)."""
        return int(round(float((pts - self._start) * self._tb * self._rate)))

    def _pts(self, index: int) -> int:
        return int(self._start + index / (self._tb * self._rate))

    def _decode_range(self, first: int, wanted: set[int], last: int) -> dict[int, np.ndarray]:
        """Seek to the keyframe before `first`, decode up to `last`; returns the wanted frames seen (RGB arrays)."""
        # seeking also rewinds a reader used before; seeking to 0 on a fresh file is free
        self._container.seek(self._pts(first), stream=self._stream, backward=True, any_frame=False)
        got: dict[int, np.ndarray] = {}
        prev: Optional[tuple[int, av.VideoFrame]] = None
        for frame in self._container.decode(self._stream):
            i = self._frame_index(frame.pts) if frame.pts is not None else (prev[0] + 1 if prev else 0)
            if prev is not None:
                # a timestamp gap (variable rate / dropped frames): wanted indices in the gap take the previous frame
                for j in range(prev[0] + 1, min(i, last + 1)):
                    if j in wanted and j not in got:
                        got[j] = _rgb(prev[1])
            if i in wanted and i not in got:
                got[i] = _rgb(frame)
            prev = (i, frame)
            if i >= last:
                break
        return got

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        idx = _checked(indices, self.num_frames, self.path)
        wanted = set(idx)
        first, last = min(wanted), max(wanted)
        try:
            got = self._decode_range(first, wanted, last)
            if got and min(got) > first:  # the seek overshot (bad index in the file): decode from the start
                got = self._decode_range(0, wanted, last)
        except Exception as e:  # any failure inside one file must not stop a run: report it as this file's error
            if isinstance(e, (av.error.FFmpegError, OSError)):
                # FFmpeg's errno codes read like OS errors here (EPERM "Operation not permitted" when no frame of a
                # cut-off file has a pixel format): say what they mean
                raise VideoDecodeError(f"{self.path}: undecodable video (truncated or corrupt file?)") from e
            raise VideoDecodeError(f"{self.path}: decoding failed ({type(e).__name__}: {e})") from e
        if not got:
            raise VideoDecodeError(f"{self.path}: no frame could be decoded (truncated or corrupt file?)")
        # indices past the decodable end (truncated file, frame count over-estimated) repeat the last good frame
        have = sorted(got)
        out = []
        for i in idx:
            if i not in got:
                k = bisect.bisect_right(have, i) - 1
                got[i] = got[have[max(k, 0)]]
            out.append(got[i])
        return torch.from_numpy(np.stack(out))

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _rgb(frame: "av.VideoFrame") -> np.ndarray:
    """RGB array of a decoded frame, turned upright by its display rotation (a phone video's "rotate 90" display
    matrix) as decord applies it, so both decoders give the same frames: rotation counter-clockwise in degrees."""
    array = frame.to_ndarray(format="rgb24")
    quarter_turns = int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
    return np.rot90(array, quarter_turns) if quarter_turns else array


class _FallbackReader(VideoReader):
    """decord reader whose failures at decode time are retried once with PyAV."""

    def __init__(self, primary: DecordReader, num_threads: int) -> None:
        self._primary = primary
        self._num_threads = num_threads
        self.path, self.num_frames, self.fps = primary.path, primary.num_frames, primary.fps
        self.name = primary.name

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        try:
            return self._primary.get_frames(indices)
        except VideoDecodeError:
            raise
        except Exception as e:
            logger.debug("decord failed on %s (%s); retrying with PyAV", self.path, e)
        with _open_pyav(self.path, self._num_threads) as reader:
            # keep the frame count decord reported so the sampled indices stay valid
            idx = [min(i, reader.num_frames - 1) for i in indices]
            return reader.get_frames(idx)

    def close(self) -> None:
        self._primary.close()


class FrameGridReader(VideoReader):
    """A reader seen at `grid_fps`: frame k is the source frame sampling.frame_grid shows at time k / grid_fps."""

    def __init__(self, reader: VideoReader, grid_fps: float) -> None:
        self._reader = reader
        self.path, self.name = reader.path, getattr(reader, "name", "")
        self._map = frame_grid(reader.num_frames, reader.fps, grid_fps)
        self.num_frames, self.fps = len(self._map), float(grid_fps)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        last = self.num_frames - 1
        return self._reader.get_frames([self._map[min(max(int(i), 0), last)] for i in indices])

    def close(self) -> None:
        self._reader.close()


class FrameFolderReader(VideoReader):
    """A folder of JPEG frames `{id}_%06d.jpg` (PySlowFast's extracted SSv2 layout), `fps` frames per second;
    frame i is the i-th file in name order. Decoded to RGB (the model's order; PySlowFast's OpenCV reads BGR and
    its REVERSE_INPUT_CHANNEL turns it back, see convert.slowfast_input_is_bgr)."""

    name = "jpeg"

    def __init__(self, path: str, fps: float = 30.0) -> None:
        self.path, self.fps = path, float(fps)
        try:
            self._files = sorted(e.path for e in os.scandir(path) if e.name.lower().endswith((".jpg", ".jpeg")))
        except OSError as e:
            raise VideoDecodeError(f"{path}: cannot list frames ({e.strerror or e})") from e
        self.num_frames = len(self._files)
        if not self._files:
            raise VideoDecodeError(f"{path}: no .jpg frames in the folder")

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        from PIL import Image  # torchvision's own JPEG decoding is deprecated (0.29)

        last, out, cache = self.num_frames - 1, [], {}
        for i in indices:
            f = self._files[min(max(int(i), 0), last)]
            if f not in cache:
                try:
                    with Image.open(f) as img:
                        cache[f] = torch.from_numpy(np.asarray(img.convert("RGB")).copy())  # [H,W,3] uint8
                except OSError as e:
                    raise VideoDecodeError(f"{f}: not a readable JPEG ({e})") from e
            out.append(cache[f])
        if len({tuple(x.shape) for x in out}) != 1:
            raise VideoDecodeError(f"{self.path}: frames of different sizes")
        return torch.stack(out)


class FramesReader(VideoReader):
    """Frames already decoded, uint8 [T, H, W, 3] RGB (a tensor or numpy array, not copied), at `fps`."""

    name = "frames"

    def __init__(self, frames: torch.Tensor, fps: float, path: str = "<frames>") -> None:
        self.path, self.fps, self._frames = path, float(fps), frames
        self.num_frames = int(frames.shape[0])

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        return self._frames[_checked(indices, self.num_frames, self.path)]


def _checked(indices: Sequence[int], num_frames: int, path: str) -> list[int]:
    """Indices as ints, clamped to the video (callers already clamp; this keeps a reader total)."""
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError(f"{path}: no frame indices requested")
    return [min(max(i, 0), num_frames - 1) for i in idx]


def _check_file(path: str) -> None:
    """Cheap checks that give clearer messages than the decoders do."""
    if "://" in path and not path.startswith("file://"):
        return
    p = path[len("file://") :] if path.startswith("file://") else path
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise VideoDecodeError(f"{path}: no such file") from None
    except OSError as e:
        raise VideoDecodeError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoDecodeError(f"{path}: is a directory, not a video")
    if not stat.S_ISREG(st.st_mode):
        # a FIFO or device reports size 0 and a decoder opening it could wait forever for data
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise VideoDecodeError(f"{path}: not a regular file ({kind}), not a video")
    if st.st_size == 0:
        raise VideoDecodeError(f"{path}: empty file")
    if not os.access(p, os.R_OK):
        raise VideoDecodeError(f"{path}: permission denied")


def _open_pyav(path: str, num_threads: int) -> PyAVReader:
    try:
        return PyAVReader(path, num_threads)
    except VideoDecodeError:
        raise
    except av.error.FFmpegError as e:  # e.g. EIO "Input/output error" for a file cut off inside its header
        raise VideoDecodeError(f"{path}: cannot open as a video (truncated, corrupt or not a video file)") from e
    except Exception as e:
        raise VideoDecodeError(f"{path}: cannot open ({type(e).__name__}: {e})") from e


def open_video_bytes(data: bytes | bytearray | memoryview, name: str = "<bytes>", num_threads: int = 1) -> PyAVReader:
    """A reader of an encoded video file held in memory (PyAV decodes it from a BytesIO); `name` is used in
    messages."""
    if not len(data):
        raise VideoDecodeError(f"{name}: empty bytes, not a video")
    try:
        return PyAVReader(name, num_threads, source=io.BytesIO(bytes(data)))
    except VideoDecodeError:
        raise
    except Exception as e:  # FFmpegError for bytes that are not a video container
        raise VideoDecodeError(f"{name}: cannot decode the bytes as a video (truncated, corrupt or not a video "
                               f"file)") from e


def open_video(path: str | os.PathLike, decoder: str = "decord", num_threads: int = 1) -> VideoReader:
    """Open `path` with `decoder` ("decord" | "pyav"); decord falls back to PyAV when missing or failing."""
    path = os.fspath(path)
    if decoder not in ("decord", "pyav"):
        raise UserError(f"data.decoder: unknown decoder {decoder!r}; use decord or pyav")
    _check_file(path)
    if decoder == "decord" and HAS_DECORD:
        try:
            return _FallbackReader(DecordReader(path, num_threads), num_threads)
        except Exception as e:  # decord cannot open some files PyAV can: try PyAV before giving up
            logger.debug("decord cannot open %s (%s); trying PyAV", path, e)
    return _open_pyav(path, num_threads)
