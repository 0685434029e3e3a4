"""Frame indices against values computed by hand from PySlowFast's formulas (REFERENCE §4)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mvit_video.data import sampling
from mvit_video.data.encode import write_video
from mvit_video.data.sampling import (
    clip_size,
    eval_clip_indices,
    frame_grid,
    segment_indices,
    start_index,
    train_clip_indices,
)


class _HalfRng(random.Random):
    """random.Random whose draws are all 0.5: uniform(a, b) = (a + b) / 2, a hand-checkable 'random' start."""

    def random(self) -> float:
        return 0.5


def test_clip_size():
    assert clip_size(16, 4, 30.0, 30.0) == 64
    assert abs(clip_size(8, 8, 25.0, 30.0) - 53.3333) < 1e-3


def test_train_clip_random_start():
    # 300 frames @30 fps, 8x8: span 64, delta 236, start = 118 -> 118 + 9j
    assert train_clip_indices(300, 30.0, 8, 8, 30.0, rng=_HalfRng()) == [118, 127, 136, 145, 154, 163, 172, 181]
    rng = random.Random(0)
    for _ in range(50):
        idx = train_clip_indices(300, 30.0, 8, 8, 30.0, rng=rng)
        assert 0 <= idx[0] <= 236 and idx[-1] - idx[0] in (62, 63, 64) and len(idx) == 8


def test_train_clip_start_rounds_up_and_end_is_clamped():
    """PySlowFast's default decode path decodes the frames with pts in [start, start + span - 1] and samples
    linspace(0, span - 1, T) of them, clamped to the last one decoded. 301 frames: delta 237, start 118.5 ->
    frames 119..181 decoded (63 of them, not 64): offsets 0, 9, ..., 54, 63 -> 62, so the clip ends at 181."""
    assert train_clip_indices(301, 30.0, 8, 8, 30.0, rng=_HalfRng()) == [119 + 9 * j for j in range(7)] + [181]
    # the 16x4 presets: offsets trunc(4.2 j) = 0, 4, 8, 12, 16, 21, ..., 58, 63 -> 62
    assert train_clip_indices(301, 30.0, 16, 4, 30.0, rng=_HalfRng()) == [
        119, 123, 127, 131, 135, 140, 144, 148, 152, 156, 161, 165, 169, 173, 177, 181]
    # a whole-frame start decodes all 64 frames: nothing clamped
    assert train_clip_indices(300, 30.0, 8, 8, 30.0, rng=_HalfRng())[-1] == 181
    # 25 fps: span 53.33, delta 196.67, start 98.33 -> frames 99..floor(150.67) = 150 (51 after the first);
    # offsets trunc(7.476 j) = 0, 7, 14, 22, 29, 37, 44, 52 -> 51
    assert train_clip_indices(250, 25.0, 8, 8, 30.0, rng=_HalfRng()) == [99, 106, 113, 121, 128, 136, 143, 150]


def test_train_clip_of_a_short_video_is_decoded_whole():
    """A video of at most T * tau frames is decoded whole (its selective-decoding test fails) and sampled from the
    fractional start, truncated: 30 frames at 25 fps, 8x4: span 26.67, delta 3.33, start 1.67 ->
    linspace(1.67, 27.33, 8) = 1.67, 5.33, 9, 12.67, 16.33, 20, 23.67, 27.33."""
    assert train_clip_indices(30, 25.0, 8, 4, 30.0, rng=_HalfRng()) == [1, 5, 9, 12, 16, 20, 23, 27]


class _FixedRng(random.Random):
    """random.Random whose draws are all `r`: uniform(a, b) = a + (b - a) * r."""

    def __init__(self, r: float) -> None:
        super().__init__(0)
        self.r = r

    def random(self) -> float:
        return self.r


def test_train_clip_matches_a_pts_range_decode(tmp_path):
    """The indices are the frames a pts-range decode of a real file returns (PySlowFast's procedure: pts range
    int(start * pts_per_frame) .. int(end * pts_per_frame), then linspace over the decoded frames, clamped)."""
    import av
    import torch

    frames = np.zeros((60, 16, 16, 3), np.uint8)
    for t in range(60):
        frames[t] = 4 * t + 8  # frame id in the pixels, robust to compression
    write_video(tmp_path / "v.mp4", frames, fps=30.0)
    decoded = []
    with av.open(str(tmp_path / "v.mp4")) as container:
        stream = container.streams.video[0]
        per_frame = stream.time_base.denominator / (stream.time_base.numerator * 30.0)
        for frame in container.decode(stream):
            decoded.append((frame.pts, int(round((frame.to_ndarray(format="rgb24").mean() - 8) / 4))))
    assert [i for _, i in decoded] == list(range(60))
    num_frames, rate = 8, 4
    size = clip_size(num_frames, rate, 30.0, 30.0)
    for r in (0.0, 0.1, 0.37, 0.5, 0.61, 0.999, 1.0):
        start = (60 - size) * r
        lo, hi = int(start * per_frame), int((start + size - 1) * per_frame)
        in_range = [i for pts, i in decoded if lo <= pts <= hi]
        offsets = torch.clamp(torch.linspace(0, size - 1, num_frames), 0, len(in_range) - 1).long().tolist()
        assert train_clip_indices(60, 30.0, num_frames, rate, 30.0, rng=_FixedRng(r)) == [in_range[o] for o in offsets]


def test_test_views_offset_sampling():
    # delta 236, K=5: starts i * floor(236 / 4) = 0, 59, 118, 177, 236
    starts = [eval_clip_indices(300, 30.0, i, 5, 8, 8, 30.0, True)[0] for i in range(5)]
    assert starts == [0, 59, 118, 177, 236]
    assert eval_clip_indices(300, 30.0, 4, 5, 8, 8, 30.0, True) == [236 + 9 * j for j in range(8)]
    # K=1: floor(delta / 2)
    assert eval_clip_indices(300, 30.0, 0, 1, 8, 8, 30.0, True)[0] == 118


def test_test_views_without_offset_sampling():
    # start = delta * i / K: view 1 of 5 starts at 47.2 -> 47, 56.2, ... truncated
    assert eval_clip_indices(300, 30.0, 1, 5, 8, 8, 30.0, False) == [47, 56, 65, 74, 83, 92, 101, 110]
    assert eval_clip_indices(300, 30.0, 0, 1, 8, 8, 30.0, False)[0] == 0


def test_other_fps_scales_the_span():
    # 250 frames @25 fps: span 8*8*25/30 = 53.33, delta 196.67, K=3 offset: starts 0, 98, 196;
    # view 1 = linspace(98, 150.33, 8) truncated
    assert eval_clip_indices(250, 25.0, 1, 3, 8, 8, 30.0, True) == [98, 105, 112, 120, 127, 135, 142, 150]
    assert eval_clip_indices(250, 25.0, 2, 3, 8, 8, 30.0, True)[0] == 196


def test_short_video_repeats_frames():
    # 10 frames, span 32: delta 0, linspace(0, 31, 8) clamped to 9
    assert eval_clip_indices(10, 30.0, 0, 1, 8, 4, 30.0, True) == [0, 4, 8, 9, 9, 9, 9, 9]
    assert train_clip_indices(10, 30.0, 8, 4, 30.0, rng=random.Random(1)) == [0, 4, 8, 9, 9, 9, 9, 9]
    assert start_index(10, 32.0, 2, 3, True) == 0


def test_segment_sampling():
    # 50 frames, 8 segments of 49/8 = 6.125: bounds (0,6) (6,12) (12,18) (18,24) (24,31) (31,37) (37,43) (43,49)
    bounds = [(0, 6), (6, 12), (12, 18), (18, 24), (24, 31), (31, 37), (37, 43), (43, 49)]
    assert segment_indices(50, 8, train=False) == [(s + e) // 2 for s, e in bounds] == [3, 9, 15, 21, 27, 34, 40, 46]
    rng = random.Random(0)
    for _ in range(20):
        idx = segment_indices(50, 8, train=True, rng=rng)
        assert all(s <= i <= e for i, (s, e) in zip(idx, bounds))
    # several test views move inside each segment and stay in it
    views = [segment_indices(50, 8, False, v, 3) for v in range(3)]
    assert len({tuple(v) for v in views}) == 3
    assert all(s <= i <= e for v in views for i, (s, e) in zip(v, bounds))
    # a video shorter than num_frames repeats frames: seg 3/8, bounds (0,0) (0,1) (1,1) (1,2) (2,2) (2,2) (2,3) (3,3)
    # (round(1.5) = 2: round half to even, as numpy)
    assert segment_indices(4, 8, train=False) == [0, 0, 1, 1, 2, 2, 2, 3]


def test_union_and_concat_indices():
    frames, positions = sampling.union_indices([[4, 6, 8], [6, 6, 9], [0, 2, 4]])
    assert frames == [0, 2, 4, 6, 8, 9]
    assert positions == [[2, 3, 4], [3, 3, 5], [0, 1, 2]]
    assert [frames[p] for p in positions[1]] == [6, 6, 9]
    assert [list(r) for r in sampling.concat_indices([3, 3, 2])] == [[0, 1, 2], [3, 4, 5], [6, 7]]


def _ffmpeg_fps_filter_sources(path, grid_fps: int = 30) -> list[int]:
    """Frame ids (written into the pixels) of a video passed through FFmpeg's fps filter (PyAV's filter graph):
    what `ffmpeg -r 30` extraction of PySlowFast's SSv2 frames shows at each 30 fps frame."""
    import av

    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        src, fps, sink = graph.add_buffer(template=stream), graph.add("fps", str(grid_fps)), graph.add("buffersink")
        src.link_to(fps)
        fps.link_to(sink)
        graph.configure()

        def drain():
            while True:
                try:
                    frame = graph.pull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    return
                out.append(int(round(frame.to_ndarray(format="rgb24")[..., 0].mean() / 8)))

        for frame in container.decode(stream):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    return out


@pytest.mark.parametrize(
    "num_frames, fps", [(10, 12.0), (23, 12.0), (7, 12.5), (12, 15.0), (2, 24.0), (9, 25.0), (30, 29.97), (6, 30.0)]
)
def test_frame_grid_matches_ffmpeg_fps_filter(tmp_path, num_frames: int, fps: float):
    """SSv2 webm (~12 fps, 1 ms timestamps) resampled to 30 fps duplicates the frames FFmpeg does."""
    frames = np.zeros((num_frames, 32, 32, 3), np.uint8)
    for t in range(num_frames):
        frames[t] = 8 * t  # frame id, robust to VP9 loss
    write_video(tmp_path / "v.webm", frames, fps=fps)
    assert list(frame_grid(num_frames, fps)) == _ffmpeg_fps_filter_sources(tmp_path / "v.webm")
    # 12 fps, hand-checked: frame i at round(i * 1000 / 12) ms, shown from round(ms * 30 / 1000)
    assert frame_grid(10, 12.0)[:10] == (0, 0, 1, 1, 1, 2, 2, 2, 3, 3)
