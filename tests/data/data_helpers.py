"""Helpers shared by the data tests (imported as `data_helpers`: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf"


def make_cfg(data: str = "synthetic", aug: str = "none", overrides: Optional[dict[str, Any]] = None) -> DictConfig:
    """config.yaml's schema merged with conf/data/<data>.yaml and conf/aug/<aug>.yaml (no other groups), then
    dotted-key `overrides`; struct mode like Hydra, so a key outside the schema fails."""
    base = OmegaConf.load(CONF / "config.yaml")
    base.pop("defaults", None)
    OmegaConf.set_struct(base, True)
    layers = [OmegaConf.load(CONF / "data" / f"{data}.yaml")]
    aug_cfg = OmegaConf.load(CONF / "aug" / f"{aug}.yaml")
    for parent in aug_cfg.pop("defaults", []) or []:
        layers.append(OmegaConf.load(CONF / "aug" / f"{parent}.yaml"))
    layers.append(aug_cfg)
    cfg = OmegaConf.merge(base, *layers)
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def indexed_frames(num_frames: int, height: int = 64, width: int = 80, seed: int = 0) -> np.ndarray:
    """Frames that differ clearly from their neighbours: a blocky texture shifted 3 px per frame, uint8 [T,H,W,3]."""
    rng = np.random.default_rng(seed)
    texture = np.kron(rng.integers(0, 256, (height // 8, width // 4 + num_frames, 3)), np.ones((8, 4, 1)))
    return np.stack([texture[:, 3 * t : 3 * t + width] for t in range(num_frames)]).astype(np.uint8)
