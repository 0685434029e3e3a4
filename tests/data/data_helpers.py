"""Helpers shared by the data tests (imported as `data_helpers`: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
from omegaconf import OmegaConf

from mvit_video.config import build_config, compose
from mvit_video.settings import RunConfig

CONF = Path(__file__).resolve().parents[2] / "conf"


def make_cfg(data: str = "synthetic", aug: str = "none", overrides: Optional[dict[str, Any]] = None) -> RunConfig:
    """The typed settings (config.build_config) of conf/config.yaml with the data=<data> and aug=<aug> groups, then
    dotted-key `overrides` (a dict value is merged into its section); a key outside the schema fails, as in Hydra."""
    cfg = compose([f"data={data}", f"aug={aug}"])
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value, merge=isinstance(value, dict))
    return build_config(cfg)


def indexed_frames(num_frames: int, height: int = 64, width: int = 80, seed: int = 0) -> np.ndarray:
    """Frames that differ clearly from their neighbours: a blocky texture shifted 3 px per frame, uint8 [T,H,W,3]."""
    rng = np.random.default_rng(seed)
    texture = np.kron(rng.integers(0, 256, (height // 8, width // 4 + num_frames, 3)), np.ones((8, 4, 1)))
    return np.stack([texture[:, 3 * t : 3 * t + width] for t in range(num_frames)]).astype(np.uint8)
