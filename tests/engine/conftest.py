"""Tiny training configs over the shared fixture videos (a few seconds per run on 2 cores)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("tiny_config", Path(__file__).with_name("tiny_config.py"))
tiny_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_config)
tiny_overrides = tiny_config.tiny_overrides


@pytest.fixture
def tiny(kinetics_list_dir, tmp_path):
    """tiny(name, *overrides) -> composed config writing to tmp_path/name."""
    from mvit_video.config import compose

    def make(name: str, *extra: str):
        return compose(tiny_overrides(kinetics_list_dir, tmp_path / name, *extra))

    return make
