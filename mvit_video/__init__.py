"""mvit_video: MViTv2 (Li et al., CVPR 2022) for video action recognition.

The stable public API (everything else is internal and may move):

    from mvit_video import Predictor, load_model, build_model, load_config
    p = Predictor.from_checkpoint("ckpt.pyth")             # classify videos: predict / timeline / features
    model = load_model("ckpt.pyth")                         # the eval-mode network of a checkpoint
    model = build_model("k400_s_16x4")                      # a preset's network, randomly initialised
    run = load_config("+experiment=k400_s_16x4", "data.num_frames=32")   # the typed settings of a command line

Commands: mvit-train, mvit-evaluate, mvit-infer, mvit-extract, mvit-summary, mvit-stats, mvit-export, mvit-convert,
mvit-prepare-kinetics, mvit-prepare-ssv2, mvit-check-dataset (each also `python -m mvit_video.<module>`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# name -> "module:attribute". Resolved on first use (PEP 562): `import mvit_video`, which every command does, must
# not import torch, the model or the data stack.
_API = {
    "Predictor": "mvit_video.predict:Predictor",
    "load_model": "mvit_video.checkpoint:load_model",
    "load_checkpoint_info": "mvit_video.checkpoint:load_checkpoint_info",
    "build_model": "mvit_video.api:build_model",
    "load_config": "mvit_video.api:load_config",
    "MViT": "mvit_video.models.mvit:MViT",
    "MViTConfig": "mvit_video.models.config:MViTConfig",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'mvit_video' has no attribute {name!r}")
    import importlib

    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
