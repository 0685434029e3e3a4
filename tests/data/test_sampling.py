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


def test_train_clip_start_rounds_up():
    """PySlowFast's default decode path starts the clip at the first frame with pts >= start: ceil, not floor.
    301 frames: delta 237, start 118.5 -> frame 119."""
    assert train_clip_indices(301, 30.0, 8, 8, 30.0, rng=_HalfRng()) == [119 + 9 * j for j in range(8)]


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
