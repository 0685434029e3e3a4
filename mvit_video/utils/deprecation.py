"""Moved interfaces keep working for one release with a DeprecationWarning: old import paths (module
`__getattr__` shims in the package `__init__`s) and the old `python scripts/<tool>.py` command lines."""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def moved(old: str, new: str, use: str | None = None) -> Any:
    """The object at `new` ("package.module:attr"), with a DeprecationWarning that `old` is going away and that
    `use` (default: `new`) is the name to import instead."""
    module, _, attr = new.partition(":")
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {use or new.replace(':', '.')}",
                  DeprecationWarning, stacklevel=3)  # points at the user's import line, past the module __getattr__
    return getattr(importlib.import_module(module), attr)


def script_moved(script: str, command: str) -> None:
    """One line on stderr (a DeprecationWarning shown as for __main__) when an old scripts/ wrapper runs."""
    # warn_explicit with module="__main__": Python's default filters show DeprecationWarnings of __main__ only, and
    # lineno 0 keeps it to one line (no source line is printed under it).
    warnings.warn_explicit(f"`python scripts/{script}` still works but is deprecated: use `{command}` (same options)",
                           DeprecationWarning, filename=f"scripts/{script}", lineno=0, module="__main__")
