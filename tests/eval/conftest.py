"""Fixtures for the evaluation tests: five tiny real videos plus bad files, Kinetics lists, a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import CLIPS, NETWORK, indexed_frames

from mvit_video.data.encode import write_video

CLASS_NAMES = ["alpha", "beta", "gamma"]
GOOD = [f"v{i}.mp4" for i in range(5)]

# The shared tiny network at tiny inputs (tests/tiny.py: 4 frames, 32 px): each test forward takes milliseconds.
TINY = [
    *NETWORK,
    *CLIPS,
    "model.num_classes=3",
    "test.num_ensemble_views=2",
    "test.num_spatial_crops=1",
    "test.batch_size=2",
    "data_loader.pin_memory=false",
]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # tiny tensors on a shared 2-core machine: one thread is fastest


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory) -> Path:
    """<dir>/videos: five 20-frame 40x48 mp4s + garbage.mp4; <dir>/test.csv (the 5 good ones, labels 0,1,2,0,1),
    <dir>/val.csv (the same plus garbage.mp4 and a missing file), classes.txt."""
    root = tmp_path_factory.mktemp("eval_data")
    videos = root / "videos"
    videos.mkdir()
    for i, name in enumerate(GOOD):
        write_video(videos / name, indexed_frames(20, height=40, width=48, seed=i), fps=30.0)
    (videos / "garbage.mp4").write_bytes(b"not a video at all " * 50)
    lines = [f"{name} {i % 3}" for i, name in enumerate(GOOD)]
    (root / "test.csv").write_text("\n".join(lines) + "\n")
    (root / "val.csv").write_text("\n".join(lines + ["garbage.mp4 2", "missing.mp4 1"]) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return root


@pytest.fixture(scope="session")
def class_names() -> list[str]:
    """The class names of `eval_data` (classes.txt) and of `tiny_checkpoint`."""
    return list(CLASS_NAMES)


@pytest.fixture(scope="session")
def eval_overrides(eval_data) -> list[str]:
    """Hydra overrides of the tiny evaluation config over `eval_data`."""
    return TINY + [f"data.path_to_data_dir={eval_data}", f"data.path_prefix={eval_data / 'videos'}"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, eval_overrides) -> Path:
    """An mvit_video checkpoint of a randomly initialised tiny network with class names."""
    from mvit_video.checkpoint import make_checkpoint
    from mvit_video.config import build_config, compose
    from mvit_video.models import build_model
    from mvit_video.settings import CheckpointData
    from mvit_video.utils.io import atomic_torch_save

    run = build_config(compose(eval_overrides))
    torch.manual_seed(0)
    model = build_model(run.model)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pyth"
    atomic_torch_save(make_checkpoint(model, run.model, CheckpointData.from_run(run).to_dict(), CLASS_NAMES), path)
    return path
