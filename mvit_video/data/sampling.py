"""Frame-index math, PySlowFast-exact (REFERENCE §4, §8): pure functions from video length/fps to frame indices.

Kinetics-style clips span `num_frames * sampling_rate * fps / target_fps` source frames; frame indices are
`linspace(start, start + span - 1, num_frames)` clamped to the video and truncated, so short videos repeat frames;
a training clip is taken from the frames a pts-range decode returns (`pts_range_clip_indices`), as PySlowFast's
default decode path does. SSv2 uses segment sampling: one frame per equal segment of the video.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from fractions import Fraction
from typing import Optional, Sequence

import torch

__all__ = [
    "clip_size",
    "start_index",
    "clip_indices",
    "train_clip_indices",
    "pts_range_clip_indices",
    "eval_clip_indices",
    "segment_indices",
    "union_indices",
    "concat_indices",
    "frame_grid",
]


def clip_size(num_frames: int, sampling_rate: int, fps: float, target_fps: float) -> float:
    """Source frames a clip spans: T * tau * video_fps / target_fps (PySlowFast's MViTv2 decode path)."""
    return num_frames * sampling_rate * fps / target_fps


def start_index(
    num_video_frames: int,
    size: float,
    view: int,
    num_views: int,
    use_offset_sampling: bool,
    rng: Optional[random.Random] = None,
) -> float:
    """Clip start as PySlowFast's get_start_end_idx: view -1 = random (train), else view `view` of `num_views`."""
    delta = max(num_video_frames - size, 0)
    if view == -1:
        return (rng or random).uniform(0, delta)
    if not 0 <= view < num_views:
        raise ValueError(f"view index {view} outside [0, {num_views})")
    if use_offset_sampling:
        if num_views == 1:
            return math.floor(delta / 2)
        return view * math.floor(delta / (num_views - 1))
    return delta * view / num_views


def clip_indices(num_video_frames: int, start: float, size: float, num_frames: int) -> list[int]:
    """linspace(start, start + size - 1, num_frames) clamped to [0, frames-1] and truncated, as PySlowFast."""
    # float32 linspace + .long() truncation: bit-identical to PySlowFast's temporal_sampling
    index = torch.linspace(start, start + size - 1, num_frames)
    index = torch.clamp(index, 0, max(num_video_frames - 1, 0)).long()
    return index.tolist()


def train_clip_indices(
    num_video_frames: int,
    fps: float,
    num_frames: int,
    sampling_rate: int,
    target_fps: float = 30.0,
    rng: Optional[random.Random] = None,
) -> list[int]:
    """Frame indices of one training clip with a uniformly random start (rng: a random.Random; default global),
    as PySlowFast's default (torchvision) decode path picks them (REFERENCE §9).

    A video longer than num_frames * sampling_rate frames is decoded by pts range: see `pts_range_clip_indices`
    (the clip starts at ceil(start) and ends one frame early in most clips). A shorter one is decoded whole and
    sampled with `clip_indices` from the fractional start (truncation: floor)."""
    size = max(1.0, clip_size(num_frames, sampling_rate, fps, target_fps))
    start = start_index(num_video_frames, size, -1, 1, False, rng)
    if num_video_frames > num_frames * sampling_rate:  # its selective-decoding test: fps * duration > T * tau
        return pts_range_clip_indices(num_video_frames, start, size, num_frames)
    return clip_indices(num_video_frames, start, size, num_frames)


def pts_range_clip_indices(num_video_frames: int, start: float, size: float, num_frames: int) -> list[int]:
    """A clip as PySlowFast's pts-range decode samples it: it decodes the frames whose timestamps lie in
    [start, start + size - 1] (frame units), i.e. frames ceil(start) .. floor(start + size - 1), then takes
    linspace(0, size - 1, num_frames) of those, clamped to the last one decoded and truncated.

    With a fractional start the range holds one frame fewer than `size` at 30 fps, so the last index is one source
    frame earlier than linspace(ceil(start), ceil(start) + size - 1) would give. (Its pts are truncated to the
    stream's time base; a start within one pts tick above a whole frame, ~1/512 of starts, would take floor(start).)
    """
    last_frame = max(num_video_frames - 1, 0)
    first = min(math.ceil(start), last_frame)
    last = min(max(math.floor(start + size - 1), first), last_frame)
    # float32 linspace from 0 + .long() truncation: bit-identical to temporal_sampling on the decoded range
    index = torch.clamp(torch.linspace(0, size - 1, num_frames), 0, last - first).long()
    return [first + i for i in index.tolist()]


def eval_clip_indices(
    num_video_frames: int,
    fps: float,
    view: int,
    num_views: int,
    num_frames: int,
    sampling_rate: int,
    target_fps: float = 30.0,
    use_offset_sampling: bool = True,
) -> list[int]:
    """Frame indices of temporal test view `view` of `num_views` (offset sampling as the MViTv2 presets)."""
    size = clip_size(num_frames, sampling_rate, fps, target_fps)
    start = start_index(num_video_frames, size, view, num_views, use_offset_sampling)
    return clip_indices(num_video_frames, start, size, num_frames)


def segment_indices(
    num_video_frames: int,
    num_frames: int,
    train: bool,
    view: int = 0,
    num_views: int = 1,
    rng: Optional[random.Random] = None,
) -> list[int]:
    """SSv2 segment sampling: one frame per segment; random in the segment (train) or its middle (test).

    With several test views, view i takes the point at fraction (2i+1)/(2K) of each segment; K=1 gives
    PySlowFast's (s+e)//2 exactly (PySlowFast repeats the same indices for every view).
    """
    rng = rng or random
    seg = float(num_video_frames - 1) / num_frames
    out = []
    for i in range(num_frames):
        s = int(round(seg * i))  # Python's round = numpy's round-half-to-even, as PySlowFast's np.round
        e = int(round(seg * (i + 1)))
        if train:
            out.append(rng.randint(s, e))
        else:
            out.append(s + ((e - s) * (2 * view + 1)) // (2 * num_views))
    return [min(max(x, 0), max(num_video_frames - 1, 0)) for x in out]


def union_indices(per_view: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """The distinct frames of all views (sorted: one forward decode), and each view as positions into them."""
    frames = sorted({i for idx in per_view for i in idx})
    pos = {f: j for j, f in enumerate(frames)}
    return frames, [[pos[i] for i in idx] for idx in per_view]


def concat_indices(lengths: Sequence[int]) -> list[range]:
    """Positions of consecutive clips of these lengths once concatenated (views decoded one by one)."""
    ends = list(itertools.accumulate(lengths))
    return [range(end - n, end) for end, n in zip(ends, lengths)]


@functools.lru_cache(maxsize=4096)
def frame_grid(
    num_video_frames: int, fps: float, grid_fps: float = 30.0, time_base: Fraction = Fraction(1, 1000)
) -> tuple[int, ...]:
    """The source frame shown at each frame of the video resampled to `grid_fps` by duplicating/dropping frames by
    timestamp, as `ffmpeg -r 30` / its fps filter (rounding "near") extract PySlowFast's SSv2 JPEG frames.

    Frame i has timestamp i / fps stored in `time_base` units (1 ms: WebM, the SSv2 videos); grid frame k shows
    the last frame whose timestamp rounds to <= k grid ticks; the grid ends where the last frame does (its
    timestamp plus one frame duration, each stored in `time_base` units), rounded."""
    rate = Fraction(fps).limit_denominator(1001)
    grid = Fraction(grid_fps).limit_denominator(1001)

    def near(x: Fraction) -> int:  # round half away from zero (FFmpeg's AV_ROUND_NEAR_INF) for x >= 0
        return math.floor(x + Fraction(1, 2))

    stored = [near(Fraction(i) / rate / time_base) for i in range(num_video_frames)]
    ticks = [near(t * time_base * grid) for t in stored]
    end = near((stored[-1] + math.floor(1 / rate / time_base)) * time_base * grid) if stored else 1
    out, j = [], 0
    for k in range(max(end, 1)):
        while j + 1 < num_video_frames and ticks[j + 1] <= k:
            j += 1
        out.append(j)
    return tuple(out)

