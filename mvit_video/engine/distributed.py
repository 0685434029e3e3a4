"""Deprecated alias: the process-group helpers moved to mvit_video.utils.distributed (below engine/ and eval/, which
both use them). `from mvit_video.utils import distributed` keeps working for one release; each name read from it
warns once (DeprecationWarning) and is the object of mvit_video.utils.distributed."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from mvit_video.utils import distributed  # here, not at the top: the alias costs nothing until a name is read
    from mvit_video.utils.deprecation import moved

    if name.startswith("__") or not hasattr(distributed, name):  # module protocol lookups, names that never were
        raise AttributeError(f"module 'mvit_video.engine.distributed' has no attribute {name!r}")

    value = moved(f"mvit_video.engine.distributed.{name}", f"mvit_video.utils.distributed:{name}")
    globals()[name] = value  # one warning per name and process
    return value
