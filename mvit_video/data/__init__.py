"""Video data: datasets (Kinetics, SSv2, synthetic; the registry of names is settings.DATASETS), decoding,
sampling, transforms and loaders.

Everything here takes the typed settings (mvit_video.settings: RunConfig and its sections), never a DictConfig.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvit_video.settings import dataset_entry

if TYPE_CHECKING:
    import torch

    from mvit_video.data.base import VideoDataset
    from mvit_video.settings import DataConfig, RunConfig

__all__ = ["build_dataset", "build_loader", "resolve_augment_on", "VideoDataset", "synthetic_dir"]


def __getattr__(name: str) -> Any:
    # Imported on first use (PEP 562): the list readers and prepare tools (mvit_video.data.lists, data.prepare)
    # live in this package, and `mvit-prepare-kinetics --help` must not import torch and torchvision for them.
    if name == "VideoDataset":
        from mvit_video.data.base import VideoDataset

        return VideoDataset
    if name == "build_loader":
        from mvit_video.data.loader import build_loader

        return build_loader
    if name == "resolve_augment_on":
        from mvit_video.data.loader import resolve_augment_on

        return resolve_augment_on
    raise AttributeError(f"module 'mvit_video.data' has no attribute {name!r}")


def synthetic_dir(data: DataConfig) -> Path:
    """The generated synthetic set of data.synthetic (generating it the first time), under data.path_to_data_dir
    (default: the user cache)."""
    from mvit_video.data.synthetic import ensure_synthetic_dataset

    return ensure_synthetic_dataset(data.path_to_data_dir or None, **dataclasses.asdict(data.synthetic))


def build_dataset(cfg: RunConfig, split: str, device: "torch.device | str | None" = None) -> VideoDataset:
    """Dataset of `split` ("train" | "val" | "test") for data.dataset, by its registered builder (settings.DATASETS:
    kinetics | ssv2 | synthetic, and any `register_dataset` added) with the ClipSpec of its protocol. `device`: the
    training device, which data_loader.augment_on (auto) needs; None: the workers augment (as before)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    # Imported here: this package's __init__ stays light (see __getattr__ above)
    from mvit_video.data.clips import ClipSpec
    from mvit_video.data.loader import resolve_augment_on

    data, aug = cfg.data, cfg.aug
    builder = dataset_entry(data.dataset).load_builder()
    on_device = device is not None and resolve_augment_on(cfg.data_loader.augment_on, device) == "device"
    spec = ClipSpec.from_config(data, cfg.test, cfg.data_loader.decoder_threads)
    return builder(data, aug, spec, split, augment_on_device=on_device)
