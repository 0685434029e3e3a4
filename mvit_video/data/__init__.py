"""Video data: datasets (Kinetics, SSv2, synthetic), decoding, sampling, transforms and loaders."""

from __future__ import annotations

from pathlib import Path

from mvit_video.data.base import VideoDataset
from mvit_video.data.loader import build_loader
from mvit_video.utils.errors import ConfigError

__all__ = ["build_dataset", "build_loader", "VideoDataset", "synthetic_dir"]


def synthetic_dir(cfg) -> Path:
    """The generated synthetic set for cfg (generating it the first time)."""
    from mvit_video.data.synthetic import ensure_synthetic_dataset

    settings = dict(cfg.data.get("synthetic") or {})
    root = str(cfg.data.path_to_data_dir) or None
    return ensure_synthetic_dataset(root, **settings)


def build_dataset(cfg, split: str) -> VideoDataset:
    """Dataset of `split` ("train" | "val" | "test") for cfg.data.dataset (kinetics | ssv2 | synthetic)."""
    from mvit_video.settings import RunConfig

    if isinstance(cfg, RunConfig):  # transition: the data internals still read the Hydra form
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(cfg.yaml)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    name = str(cfg.data.dataset)
    if name == "kinetics":
        from mvit_video.data.kinetics import build_kinetics

        return build_kinetics(cfg, split)
    if name == "ssv2":
        from mvit_video.data.ssv2 import build_ssv2

        return build_ssv2(cfg, split)
    if name == "synthetic":
        from mvit_video.data.kinetics import build_kinetics

        root = str(synthetic_dir(cfg))
        return build_kinetics(cfg, split, data_dir=root, prefix=root)
    raise ConfigError(f"data.dataset: unknown dataset {name!r}; use kinetics, ssv2 or synthetic")
