"""The model tests' network: the shared tiny MViTv2 (tests/tiny.py) at 8 frames of 32 px, 5 classes."""

from __future__ import annotations

import functools

import pytest
import torch
from tiny import tiny_config


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny():
    """tiny(**fields) -> the shared tiny network's MViTConfig for 8x32x32 clips and 5 classes, `fields` changed."""
    return functools.partial(tiny_config, num_frames=8, num_classes=5)
