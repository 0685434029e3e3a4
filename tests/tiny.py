"""What the test suites share, each defined once: the tiny MViTv2, the clips it reads, the frames of the fixture
videos, typed settings built from the config groups, and waiting for a subprocess run's log line.

Imported as `tiny` (pyproject.toml's pytest `pythonpath` puts tests/ on sys.path). The network is written once,
as Hydra overrides: the training and evaluation runs pass them to the entry points, and `tiny_config` builds the
model tests' MViTConfig from the same overrides through config.build_config, so every suite tests one network.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mvit_video.models import MViTConfig
from mvit_video.settings import RunConfig

# The network, by stages as a preset writes it: 3 blocks in 2 stages, width 16 -> 32 and heads 1 -> 2 at block 1,
# where q is strided (1, 2, 2) (pooled with stride 1 elsewhere); k/v pooled with the adaptive stride (1, 4, 4) that
# halves where q is strided, as MViTv2's (1, 8, 8). Every MViTv2 mechanism (cls token, conv pooling, t/h/w rel-pos,
# residual pooling, a width change inside attention, a block after it) at toy width: a 4x32x32 clip is 2x8x8
# tokens (k/v 2x2x2), 2x4x4 in stage 2.
NETWORK = [
    "mvit.depths=[1,2]",
    "mvit.embed_dim=16",
    "mvit.num_heads=1",
    "mvit.pool_kv_stride_adaptive=[1,4,4]",
    "model.dropout_rate=0.0",  # regularisation off; the training runs turn it on
    "mvit.droppath_rate=0.0",
]

# The clips of the fixture videos (tests/conftest.py): 4 frames of 32 px, read in the test process; the two
# classes of `kinetics_list_dir`.
CLIPS = [
    "data.dataset=kinetics",
    "data.num_frames=4",
    "data.sampling_rate=2",
    "data.train_crop_size=32",
    "data.test_crop_size=32",
    "data.train_jitter_scales=[32,40]",
    "data.train_jitter_scales_relative=[0.5,1.0]",
    "data_loader.num_workers=0",
    "model.num_classes=2",
]


def tiny_overrides(list_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    """Overrides for a tiny training run (2 epochs of batch 2, val every epoch) over the lists in `list_dir`."""
    return [
        *NETWORK,
        *CLIPS,
        f"data.path_to_data_dir={list_dir}",
        "data.decoder=pyav",
        "model.dropout_rate=0.5",  # dropout on: exact resume must restore the RNG too
        "mvit.droppath_rate=0.1",
        "train.batch_size=2",
        "train.eval_period=1",
        "train.checkpoint_period=1",
        "test.batch_size=2",
        "test.num_ensemble_views=1",
        "test.num_spatial_crops=1",
        "test.enable=false",
        "solver.max_epoch=2",
        "solver.warmup_epochs=0.5",
        "solver.base_lr=1e-3",
        "log_period=1",
        f"output_dir={output_dir}",
        *extra,
    ]


@functools.lru_cache(maxsize=1)
def _network() -> MViTConfig:
    from mvit_video.config import build_config, compose

    return build_config(compose([*NETWORK, *CLIPS, "output_dir=unused"])).model


def tiny_config(**fields: Any) -> MViTConfig:
    """The MViTConfig that NETWORK on CLIPS builds (through config.build_config), with MViTConfig `fields` changed,
    e.g. tiny_config(num_frames=8, num_classes=5). New `depths` bring their own depth unless `depth` is given."""
    if "depths" in fields:
        fields.setdefault("depth", None)  # None: sum(depths)
    return dataclasses.replace(_network(), **fields)


def indexed_frames(num_frames: int, height: int = 64, width: int = 80, seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3] frames that differ clearly from their neighbours: a random texture of 8x4 px blocks shifted
    3 px per frame, so that a decoded frame can be matched to its source index (tests/data/test_decoding.py)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (-(-height // 8), width // 4 + num_frames, 3))
    texture = np.kron(blocks, np.ones((8, 4, 1)))[:height]
    return np.stack([texture[:, 3 * t : 3 * t + width] for t in range(num_frames)]).astype(np.uint8)


def make_cfg(data: str = "synthetic", aug: str = "none", overrides: Optional[dict[str, Any]] = None) -> RunConfig:
    """The typed settings (config.build_config) of conf/config.yaml with the data=<data> and aug=<aug> groups, then
    dotted-key `overrides` (a dict value is merged into its section); a key outside the schema fails, as in Hydra."""
    from omegaconf import OmegaConf

    from mvit_video.config import build_config, compose

    cfg = compose([f"data={data}", f"aug={aug}"])
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value, merge=isinstance(value, dict))
    return build_config(cfg)


def kinetics_cfg(list_dir: Path, aug: str = "none", **overrides: Any) -> RunConfig:
    """Typed settings of a tiny Kinetics-format run over `list_dir`: 4x2 clips at 32 px, 2 clips per video, batch 4,
    2x1 test views, loading in the process (the data tests' common base; `overrides` win)."""
    base = {
        "data.path_to_data_dir": str(list_dir),
        "data.num_frames": 4,
        "data.sampling_rate": 2,
        "data.train_crop_size": 32,
        "data.test_crop_size": 32,
        "data.train_jitter_scales": [32, 40],
        "data.num_sample": 2,
        "train.batch_size": 4,
        "test.batch_size": 3,
        "test.num_ensemble_views": 2,
        "test.num_spatial_crops": 1,
        "data_loader.num_workers": 0,
        **overrides,
    }
    return make_cfg("kinetics", aug, base)


def wait_for_text(path: Path, text: str, proc: Any, timeout: float = 240) -> None:
    """Until `text` appears in the file `path` (a run's train.log) while `proc` (a subprocess.Popen) runs;
    AssertionError with the process's last output when it never does."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.is_file() and text in path.read_text():
            return
        time.sleep(0.1)
    out = proc.stdout.read() if proc.poll() is not None and proc.stdout else ""
    raise AssertionError(f"{text!r} never appeared in {path}; process: {proc.poll()} {out[-2000:]}")
