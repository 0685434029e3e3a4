"""MViTv2 video model: config, network, custom ops, FLOP counting; checkpoint helpers from `checkpoint.py`.

The presets are data: conf/model/mvit_*.yaml (stage depths) and conf/experiment/*.yaml.
"""

from __future__ import annotations

from typing import Any

from mvit_video.models.config import BlockConfig, MViTConfig, block_configs, round_width, stage_lists
from mvit_video.models.mvit import MViT, build_model

# Checkpoint helpers live in mvit_video/models/checkpoint.py; resolved lazily so importing the network never
# depends on them.
_CHECKPOINT_NAMES = ("load_model", "make_checkpoint", "load_checkpoint_info", "data_config_from_cfg")


def __getattr__(name: str) -> Any:
    if name in _CHECKPOINT_NAMES:
        from mvit_video.models import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'mvit_video.models' has no attribute {name!r}")


__all__ = [
    "BlockConfig", "MViT", "MViTConfig", "block_configs", "build_model", "round_width", "stage_lists",
    *_CHECKPOINT_NAMES,
]
