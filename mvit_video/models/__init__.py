"""MViTv2 video model: config and per-block plan, network, custom ops, FLOP counting, conversion of foreign
weights. The presets are data: conf/model/mvit_*.yaml (stage depths) and conf/experiment/*.yaml. Our checkpoint
format (save, load a model) is mvit_video.checkpoint."""

from __future__ import annotations

from typing import Any

from mvit_video.models.config import BlockConfig, MViTConfig, block_configs, round_width, stage_lists

__all__ = ["BlockConfig", "MViT", "MViTConfig", "block_configs", "build_model", "round_width", "stage_lists"]

# The network is imported on first use (PEP 562): composing a config imports models.config, which must not pull
# in torch. Checkpoint helpers that the README and the previous release showed here moved to mvit_video.checkpoint
# (the top-level `mvit_video.load_model`): they keep working, with a DeprecationWarning, for one release.
_NETWORK = ("MViT", "build_model")
_MOVED = {"load_model": ("mvit_video.checkpoint:load_model", "mvit_video.load_model"),
          "make_checkpoint": ("mvit_video.checkpoint:make_checkpoint", "mvit_video.checkpoint.make_checkpoint"),
          "load_checkpoint_info": ("mvit_video.checkpoint:load_checkpoint_info", "mvit_video.load_checkpoint_info")}


def __getattr__(name: str) -> Any:
    if name in _NETWORK:
        from mvit_video.models import mvit

        return getattr(mvit, name)
    if name in _MOVED:
        from mvit_video.utils.deprecation import moved

        target, use = _MOVED[name]
        value = moved(f"mvit_video.models.{name}", target, use)
        # Cached: `from mvit_video.models import load_model` looks the name up twice (importlib's fromlist check,
        # then the import itself), and one warning per process is enough.
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mvit_video.models' has no attribute {name!r}")
