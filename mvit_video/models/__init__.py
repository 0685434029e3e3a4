"""MViTv2 video model: config and per-block plan, network, FLOP counting, conversion of foreign weights. Our
checkpoint format (save, load a model) is mvit_video.checkpoint."""

from __future__ import annotations

from mvit_video.models.config import BlockConfig, MViTConfig, block_configs, round_width
from mvit_video.models.mvit import MViT, build_model

__all__ = ["BlockConfig", "MViT", "MViTConfig", "block_configs", "build_model", "round_width"]
