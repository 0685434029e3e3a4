"""RNG state in a checkpoint: python, numpy, torch and CUDA generators as tensors and plain values, so that exact
resume restores every draw and `torch.load(weights_only=True)` still reads the file."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def get_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch (CPU) and CUDA, as tensors/plain values (loadable weights_only)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(_toplain(random.getstate())),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `get_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _toplain(obj: Any) -> Any:
    """Python's random state as lists/ints (tuples of 625 ints survive weights_only loading as lists)."""
    if isinstance(obj, tuple):
        return [_toplain(x) for x in obj]
    return obj
