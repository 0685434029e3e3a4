"""Fixtures for the evaluation tests: five tiny real videos plus bad files, Kinetics lists, a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mvit_video.data.encode import write_video

CLASS_NAMES = ["alpha", "beta", "gamma"]
GOOD = [f"v{i}.mp4" for i in range(5)]

# A tiny network at tiny inputs (4 frames, 32 px): each test forward takes milliseconds.
TINY = [
    "data.dataset=kinetics",
    "data.num_frames=4",
    "data.sampling_rate=2",
    "data.train_crop_size=32",
    "data.test_crop_size=32",
    "data.train_jitter_scales=[32,40]",
    "model.num_classes=3",
    "mvit.depths=null",  # explicit per-block lists below
    "mvit.depth=3",
    "mvit.embed_dim=16",
    "mvit.pool_q_stride=[[0,1,1,1],[1,1,2,2],[2,1,1,1]]",
    "mvit.pool_kv_stride_adaptive=[1,2,2]",
    "mvit.dim_mul=[[1,2.0]]",
    "mvit.head_mul=[[1,2.0]]",
    "test.num_ensemble_views=2",
    "test.num_spatial_crops=1",
    "test.batch_size=2",
    "data_loader.num_workers=0",
    "data_loader.pin_memory=false",
]


def square_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 [T,H,W,3]: a square of a per-video colour moving over a gradient (content differs per frame)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 5) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], axis=-1).astype(np.uint8)
    frames = np.repeat(base[None], num_frames, axis=0)
    color = rng.integers(0, 256, size=3, dtype=np.uint8)
    for t in range(num_frames):
        x = (t * 2) % (width - 10)
        frames[t, 8:18, x : x + 10] = color
    return frames


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
        write_video(videos / name, square_frames(20, height=40, width=48, seed=i), fps=30.0)
    (videos / "garbage.mp4").write_bytes(b"not a video at all " * 50)
    lines = [f"{name} {i % 3}" for i, name in enumerate(GOOD)]
    (root / "test.csv").write_text("\n".join(lines) + "\n")
    (root / "val.csv").write_text("\n".join(lines + ["garbage.mp4 2", "missing.mp4 1"]) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return root


@pytest.fixture(scope="session")
def eval_overrides(eval_data) -> list[str]:
    """Hydra overrides of the tiny evaluation config over `eval_data`."""
    return TINY + [f"data.path_to_data_dir={eval_data}", f"data.path_prefix={eval_data / 'videos'}"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, eval_overrides) -> Path:
    """An mvit_video checkpoint of a randomly initialised tiny network with class names."""
    from mvit_video.checkpoint import data_config, make_checkpoint
    from mvit_video.config import build_config, compose
    from mvit_video.models import build_model
    from mvit_video.utils.io import atomic_torch_save

    run = build_config(compose(eval_overrides))
    torch.manual_seed(0)
    model = build_model(run.model)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pyth"
    atomic_torch_save(make_checkpoint(model, run.model, data_config(run), CLASS_NAMES), path)
    return path
