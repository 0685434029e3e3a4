"""Training checkpoints: atomic writes, the latest one found for auto-resume, RNG states, fine-tuning weights."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mvit_video.models.checkpoint import check_finite, strip_wrapper_prefixes, torch_load
from mvit_video.utils.errors import UserError
from mvit_video.utils.io import atomic_torch_save

logger = logging.getLogger(__name__)

PREEMPT_NAME = "checkpoint_preempt.pyth"
_EPOCH_RE = re.compile(r"checkpoint_epoch_(\d{5})\.pyth$")


def checkpoint_dir(output_dir: str | Path) -> Path:
    """<output_dir>/checkpoints."""
    return Path(output_dir) / "checkpoints"


def epoch_checkpoint_path(output_dir: str | Path, epoch: int) -> Path:
    """Path of the checkpoint written after `epoch` completed epochs (1-based, as PySlowFast names them)."""
    return checkpoint_dir(output_dir) / f"checkpoint_epoch_{epoch:05d}.pyth"


def preempt_checkpoint_path(output_dir: str | Path) -> Path:
    """Path of the mid-epoch checkpoint written on SIGTERM/SIGUSR1."""
    return checkpoint_dir(output_dir) / PREEMPT_NAME


def _progress(path: Path) -> tuple[int, int]:
    """(completed epochs, samples into the next epoch) of a checkpoint, read from the file itself."""
    ckpt = load(path)
    sampler = ckpt.get("sampler") or {}
    return int(ckpt.get("epoch", 0)), int(sampler.get("start_index", 0))


def find_latest(output_dir: str | Path) -> Path | None:
    """The checkpoint furthest into training (epoch checkpoints and the preemption one), or None."""
    d = checkpoint_dir(output_dir)
    if not d.is_dir():
        return None
    epochs = sorted((int(m.group(1)), p) for p in d.iterdir() if (m := _EPOCH_RE.search(p.name)))
    best = epochs[-1][1] if epochs else None
    preempt = d / PREEMPT_NAME
    if preempt.is_file():
        pre_epoch, pre_index = _progress(preempt)
        best_epoch = epochs[-1][0] if epochs else -1
        if pre_epoch > best_epoch or (pre_epoch == best_epoch and pre_index > 0):
            best = preempt
    return best


def load_latest(output_dir: str | Path) -> tuple[Path | None, dict[str, Any] | None]:
    """(path, contents) of the intact checkpoint furthest into training, or (None, None). An unreadable one
    (torn by a full disk, a foreign file) is skipped with a warning and the previous one is used."""
    d = checkpoint_dir(output_dir)
    if not d.is_dir():
        return None, None
    # (epochs done, samples into the next epoch, epoch checkpoint first on a tie, path)
    candidates = [(int(m.group(1)), 0, 1, p) for p in d.iterdir() if (m := _EPOCH_RE.search(p.name))]
    loaded: dict[Path, dict[str, Any]] = {}
    preempt = d / PREEMPT_NAME
    if preempt.is_file():
        try:
            loaded[preempt] = load(preempt)
            sampler = loaded[preempt].get("sampler") or {}
            candidates.append((int(loaded[preempt].get("epoch", 0)), int(sampler.get("start_index", 0)), 0, preempt))
        except UserError as e:
            logger.warning("skipping unreadable checkpoint %s: %s", preempt, e)
    for *_, path in sorted(candidates, reverse=True):
        try:
            return path, loaded.get(path) or load(path)
        except UserError as e:
            logger.warning("skipping unreadable checkpoint %s (%s); trying the previous one", path, e)
    return None, None


def remove_orphan_tmp(output_dir: str | Path) -> list[Path]:
    """Delete the temp files of atomic writes killed midway (`.NAME.XXXX.tmp`) in output_dir and checkpoints/.
    Only call while holding the run lock: a live writer's temp file looks the same."""
    removed = []
    for d in (Path(output_dir), checkpoint_dir(output_dir)):
        if d.is_dir():
            for p in d.glob(".*.tmp"):
                if p.is_file():
                    p.unlink(missing_ok=True)
                    removed.append(p)
    return removed


def load(path: str | Path) -> dict[str, Any]:
    """torch.load a checkpoint (weights_only: tensors, numbers, strings); a bad file is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    ckpt = torch_load(path)  # weights_only; a truncated or foreign file becomes a UserError naming it
    if not isinstance(ckpt, dict):
        raise UserError(f"checkpoint {path} is not a dict of states")
    return ckpt


def save(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write atomically (temp file + rename): a crash never leaves a torn checkpoint under `path`."""
    atomic_torch_save(ckpt, path)
    logger.info("saved checkpoint %s", path)


def get_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch (CPU) and CUDA, as tensors/plain values (loadable weights_only)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(_to_plain(random.getstate())),
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


def _to_plain(obj: Any) -> Any:
    """Python's random state as lists/ints (tuples of 625 ints survive weights_only loading as lists)."""
    if isinstance(obj, tuple):
        return [_to_plain(x) for x in obj]
    return obj


def _is_torchvision_state(state: dict) -> bool:
    return any(k.removeprefix("module.").startswith(("conv_proj.", "pos_encoding.")) for k in state)


def pretrained_state_dict(ckpt: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """Our state dict from any checkpoint train.checkpoint_file_path may name: ours ("model"), a plain state dict,
    PySlowFast's .pyth ("model_state" + its "cfg", through convert.from_slowfast: key checks, BGR input folded) or
    torchvision's mvit_v2_s weights (through convert.from_torchvision). Wrapper prefixes are removed."""
    from mvit_video.models import convert  # lazily: the converter pulls in yaml parsing the loop never needs

    if "model_state" in ckpt and "model" not in ckpt:  # PySlowFast: its key names, maybe a BGR-input kernel
        cfg = ckpt.get("cfg")
        if not (isinstance(cfg, str) and cfg.strip()):
            raise UserError(
                f"checkpoint {path}: a PySlowFast checkpoint without its 'cfg'; convert it first: "
                f"python scripts/convert_checkpoint.py --from slowfast --config <its yaml> {path} converted.pyth"
            )
        source = f"{path} (stored cfg)"
        bgr = convert.slowfast_input_is_bgr(cfg, source=source)
        return convert.from_slowfast(ckpt["model_state"], source=str(path), reverse_input_channel=bgr)
    state = ckpt.get("model") or ckpt.get("state_dict") or ckpt
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if _is_torchvision_state(state):
        return convert.from_torchvision(state)
    return strip_wrapper_prefixes(state)


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load initial weights for fine-tuning; head weights of another shape are dropped (head stays re-initialised).

    Accepts what pretrained_state_dict does: ours, PySlowFast's and torchvision's checkpoints (the foreign ones
    through the converter, as scripts/convert_checkpoint.py)."""
    ckpt = load(path)
    state = pretrained_state_dict(ckpt, path)
    check_finite(state, path)
    own = model.state_dict()
    dropped = []
    for key in list(state):
        if key in own and own[key].shape != state[key].shape:
            if not key.startswith("head"):
                raise UserError(f"checkpoint {path}: '{key}' has shape {tuple(state[key].shape)}, the model "
                                f"expects {tuple(own[key].shape)} (is it the same architecture?)")
            dropped.append((key, tuple(state[key].shape)))
            del state[key]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if dropped:
        logger.info("fine-tuning from %s: head re-initialised for %d classes (checkpoint head %s)", path,
                    _num_classes(own, [k for k, _ in dropped]), dropped[0][1])
    else:
        logger.info("initialised weights from %s", path)
    # The head keys we dropped are "missing" on purpose; anything else missing means the wrong file.
    missing = [k for k in missing if k not in {k for k, _ in dropped}]
    if missing or unexpected:
        raise UserError(f"checkpoint {path} does not match the model: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]} (convert foreign checkpoints with scripts/convert_checkpoint.py)")


def _num_classes(own: dict, keys: list[str]) -> int:
    weights = [k for k in keys if k.endswith("weight")]
    return int(own[weights[0]].shape[0]) if weights else -1
