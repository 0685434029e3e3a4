"""Tiny MViTv2 configs shared by the model tests (a few blocks, width 16-32, 4-8 frames, 32-64 px)."""

from __future__ import annotations

import pytest
import torch

from mvit_video.models import MViTConfig


def tiny_config(**overrides) -> MViTConfig:
    """3 blocks, 2 stages, cls token, conv pooling, t/h/w rel-pos, residual pooling: 8x32x32 -> 4x8x8 tokens."""
    values = dict(
        num_classes=5, dropout_rate=0.0, num_frames=8, crop_size=32, depth=3, embed_dim=16, num_heads=1,
        droppath_rate=0.0, pool_q_stride=[[0, 1, 1, 1], [1, 2, 2, 2], [2, 1, 1, 1]],
        pool_kv_stride_adaptive=[2, 4, 4], dim_mul=[[1, 2.0]], head_mul=[[1, 2.0]],
    )
    values.update(overrides)
    return MViTConfig(**values)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny():
    """The `tiny_config(**overrides)` factory."""
    return tiny_config
