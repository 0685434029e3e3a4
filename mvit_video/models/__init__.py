"""MViTv2 video model: config and per-block plan, network, custom ops, FLOP counting, conversion of foreign
weights. The presets are data: conf/model/mvit_*.yaml (stage depths) and conf/experiment/*.yaml. Our checkpoint
format (save, load a model) is mvit_video.checkpoint."""

from __future__ import annotations

from mvit_video.models.config import BlockConfig, MViTConfig, block_configs, round_width, stage_lists
from mvit_video.models.mvit import MViT, build_model

__all__ = ["BlockConfig", "MViT", "MViTConfig", "block_configs", "build_model", "round_width", "stage_lists"]
