"""Tiny training configs over the shared fixture videos (a few seconds per run on 2 cores)."""

from __future__ import annotations

import pytest
from tiny import tiny_overrides


@pytest.fixture
def tiny(kinetics_list_dir, tmp_path):
    """tiny(name, *overrides) -> composed config of a tiny training run (tests/tiny.py) writing to tmp_path/name."""
    from mvit_video.config import compose

    def make(name: str, *extra: str):
        return compose(tiny_overrides(kinetics_list_dir, tmp_path / name, *extra))

    return make
