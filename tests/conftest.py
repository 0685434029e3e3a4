"""Shared fixtures: tiny real videos written with PyAV, and a tiny Kinetics-format list over them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import indexed_frames

from mvit_video.data.encode import write_video

torch.set_num_threads(1)  # tiny tensors on a (shared) 2-core machine: two OpenMP threads spin and run slower

# name, frames, fps: mp4 (h264) and webm (vp9) of several lengths and rates; the seed of a video is its row
VIDEOS = [("a.mp4", 60, 30.0), ("b.mp4", 90, 25.0), ("c.webm", 48, 30.0), ("short.mp4", 10, 30.0)]


@pytest.fixture(autouse=True)
def _drop_cli_log_handlers():
    """Commands run in-process (extract, evaluate) install stderr handlers on the root logger (cli.setup_logging);
    pytest closes the captured stream after the test, so a handler left behind would fail later tests' logging."""
    yield
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_mvit_video", False)]:
        root.removeHandler(h)
        h.close()


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray, float]]:
    """name -> (path, source frames, fps) of real encoded VIDEOS of 64x80 `indexed_frames`: a decoded frame can be
    matched to its index."""
    d = tmp_path_factory.mktemp("videos")
    out = {}
    for seed, (name, n, fps) in enumerate(VIDEOS):
        frames = indexed_frames(n, seed=seed)
        write_video(d / name, frames, fps=fps)
        out[name] = (d / name, frames, fps)
    return out


@pytest.fixture(scope="session")
def video_dir(videos) -> Path:
    """The directory of `videos`, plus two bad files: empty.mp4 and garbage.mp4."""
    d = next(iter(videos.values()))[0].parent
    (d / "empty.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(b"this is not a video" * 100)
    return d


@pytest.fixture(scope="session")
def kinetics_list_dir(video_dir, tmp_path_factory) -> Path:
    """PySlowFast-format lists train/val/test.csv (`path label`) over the good videos of `video_dir`."""
    d = tmp_path_factory.mktemp("lists")
    lines = [f"{video_dir / name} {i % 2}" for i, (name, _, _) in enumerate(VIDEOS)]
    for split in ("train", "val", "test"):
        (d / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return d


# Parametrized families whose every case composes a Hydra config or builds a preset (~0.1 s of CPU each, two
# dozen cases for some): the quick loop (`pytest -m "not slow"`) runs the first N cases of each, the full suite
# all of them. Keyed by test function name (one such family per name).
FAST_LOOP_CASES = {
    "test_bad_value_is_named": 2,
    "test_config_error_names_the_key": 2,
    "test_experiment_composes_with_official_recipe": 1,
    "test_unknown_key_or_choice_is_named": 2,
    "test_config_mistakes_get_a_suggestion": 2,
    "test_block_plan_b_and_l": 1,
    "test_malformed_line_names_file_and_line": 2,
}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marks
def pytest_collection_modifyitems(config, items) -> None:
    """Mark the cases of FAST_LOOP_CASES's families beyond the first N `slow`."""
    seen: dict[str, int] = {}
    for item in items:
        keep = FAST_LOOP_CASES.get(getattr(item, "originalname", ""))
        if keep is None or getattr(item, "callspec", None) is None:
            continue
        family = item.nodeid.split("[", 1)[0]
        seen[family] = seen.get(family, 0) + 1
        if seen[family] > keep:
            item.add_marker(pytest.mark.slow)
