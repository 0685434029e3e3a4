"""Our checkpoint file: what it holds, reading and writing it (atomically), loading a model from it, and where
training keeps them (paths, the best one, retention, the latest intact one).

```
{"format": "mvit_video/1",
 "model": state_dict,                 # weights of the network as trained
 "model_config": asdict(MViTConfig),  # enough to rebuild the network without any config file
 "data_config": {...},                # how inputs are sampled, sized, normalised and tested (settings.CheckpointData)
 "class_names": list[str] | None,
 ...}                                 # training adds epoch, optimizer, scheduler, scaler, ema, rng, sampler, cfg
```
(mvit_video.engine.trainer.checkpoint_state writes the training keys.) Everything in it is tensors and plain
python, so `torch.load(weights_only=True)` reads it. Foreign formats (PySlowFast, torchvision) come in through
mvit_video.models.convert (mvit_video.checkpoint.pretrained); RNG states are mvit_video.checkpoint.rng.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from mvit_video.models.convert import strip_wrapper_prefixes
from mvit_video.models.mvit import MViT, MViTConfig
from mvit_video.utils.errors import UserError
from mvit_video.utils.io import atomic_torch_save

logger = logging.getLogger(__name__)

FORMAT = "mvit_video/1"


def plain(value: Any) -> Any:
    """Tuples -> lists, mappings -> dicts (recursively), so the value survives torch.load(weights_only=True)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def make_checkpoint(
    model: nn.Module,
    config: MViTConfig,
    data_config: Mapping[str, Any],
    class_names: list[str] | None,
) -> dict:
    """The model part of a checkpoint dict (training adds its own keys to the returned dict)."""
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if len(class_names) != config.num_classes:
            raise UserError(
                f"{len(class_names)} class names given but the model has num_classes={config.num_classes}"
            )
    return {
        "format": FORMAT,
        "model": strip_wrapper_prefixes(model.state_dict()),
        "model_config": plain(dataclasses.asdict(config)),
        "data_config": plain(dict(data_config)),
        "class_names": class_names,
    }


def torch_load(path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False) -> Any:
    """torch.load(weights_only=True) with every failure turned into a UserError that names the file. `mmap`: the
    tensors are mapped, read only when used (a probe of a checkpoint's small entries)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        # torch words it "Unsupported global: GLOBAL mod.Class" (a class) or "unsupported GLOBAL posix.system"
        # (a function, i.e. code to run)
        unsafe = re.search(r"unsupported global:?(?: GLOBAL)? ([\w.]+)", str(e), re.IGNORECASE)
        if unsafe:
            raise UserError(
                f"{path}: holds a python object ({unsafe.group(1)}) besides tensors and plain data, so it is not "
                f"loaded (torch.load weights_only=True refuses it)"
            ) from e
        raise UserError(f"{path}: not a PyTorch checkpoint (unreadable as one)") from e
    except EOFError as e:
        raise UserError(f"{path}: empty or truncated file, not a PyTorch checkpoint") from e
    except (RuntimeError, OSError) as e:  # e.g. a truncated zip archive, a file that cannot be read
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({first[:120]})") from e
    except Exception as e:  # garbage makes the unpickler fail in many ways (KeyError, ValueError, ...)
        raise UserError(f"{path}: not a PyTorch checkpoint (unreadable as one)") from e


def _describe_foreign(obj: Any) -> str:
    """A hint saying what kind of file this is when it is not one of ours."""
    if isinstance(obj, Mapping):
        keys = set(obj)
        if "model_state" in keys or "cfg" in keys:
            return "a PySlowFast checkpoint: convert it first with scripts/convert_checkpoint.py --from slowfast"
        if any(str(k).startswith("conv_proj.") or str(k).startswith("pos_encoding.") for k in keys):
            return (
                "a torchvision MViT state dict: convert it first with scripts/convert_checkpoint.py --from torchvision"
            )
        if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return "a bare state dict without model config: it cannot be loaded on its own"
        if "format" in keys:
            return f"format {obj['format']!r}, expected {FORMAT!r}"
        return "a dict without the mvit_video checkpoint keys (format, model, model_config)"
    return f"a {type(obj).__name__}, not a checkpoint dict"


def _read_ours(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load `path` and check it is an mvit_video checkpoint."""
    ckpt = torch_load(path, map_location=map_location)
    if not (isinstance(ckpt, Mapping) and ckpt.get("format") == FORMAT):
        raise UserError(f"{path}: not an mvit_video checkpoint ({_describe_foreign(ckpt)})")
    for key in ("model", "model_config"):
        if key not in ckpt:
            raise UserError(f"{path}: mvit_video checkpoint without {key!r}")
    check_class_names(ckpt, path)
    return dict(ckpt)


def check_class_names(ckpt: Mapping[str, Any], path: str | os.PathLike) -> None:
    """UserError when the checkpoint's class_names do not name its head's classes one to one: reports would
    otherwise print bare indices (or wrong names) for some classes without a word."""
    names = ckpt.get("class_names")
    if names is None:
        return
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{path}: class_names is not a list of strings")
    num_classes = (ckpt.get("model_config") or {}).get("num_classes")
    if isinstance(num_classes, int) and len(names) != num_classes:
        raise UserError(f"{path}: holds {len(names)} class names but its head has {num_classes} classes "
                        f"(model_config.num_classes); the checkpoint is inconsistent")


def load_checkpoint_info(path: str | os.PathLike) -> dict:
    """model_config, data_config, class_names (and epoch and cfg when saved by training) of a checkpoint."""
    ckpt = _read_ours(path)
    info = {
        "format": ckpt["format"],
        "model_config": ckpt["model_config"],
        "data_config": ckpt.get("data_config"),
        "class_names": ckpt.get("class_names"),
    }
    for key in ("epoch", "iteration", "source", "cfg"):  # cfg: the training run's resolved config (YAML text)
        if key in ckpt:
            info[key] = ckpt[key]
    return info


def _ema_state_dict(ema: Any, path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    """The weights inside a checkpoint's "ema" entry (a state dict, possibly of an AveragedModel wrapper)."""
    if isinstance(ema, Mapping):
        for key in ("model", "state_dict", "module"):
            if key in ema and isinstance(ema[key], Mapping):
                ema = ema[key]
                break
        # torch.optim.swa_utils.AveragedModel keeps a step counter next to the wrapped model's weights
        return {k: v for k, v in ema.items() if k != "n_averaged"}
    raise UserError(f"{path}: the 'ema' entry is not a state dict")


def build_from_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike, use_ema: bool = False) -> MViT:
    """Build MViT from ckpt["model_config"] and load its weights strictly ("ema" weights when use_ema)."""
    try:
        config = MViTConfig.from_dict(dict(ckpt["model_config"]))
    except (TypeError, ValueError, KeyError) as e:
        raise UserError(f"{path}: bad model_config ({e})") from e
    if use_ema:
        if ckpt.get("ema") is None:
            raise UserError(f"{path}: no EMA weights in this checkpoint (train.ema.enable was off)")
        state_dict = _ema_state_dict(ckpt["ema"], path)
    else:
        state_dict = ckpt["model"]
    check_finite(state_dict, path)
    return build_with_weights(config, strip_wrapper_prefixes(state_dict), source=str(path))


def check_finite(state_dict: Mapping[str, Any], source: str | os.PathLike) -> None:
    """UserError naming the first weight holding NaN/inf: such a model scores every video as garbage."""
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise UserError(f"{source}: weight '{key}' holds NaN/inf values (training diverged?); refusing to use "
                            f"this checkpoint")


def build_with_weights(config: MViTConfig, state_dict: Mapping[str, torch.Tensor], source: str) -> MViT:
    """MViT(config) holding exactly `state_dict` (strict; float32). Built on the meta device when possible, so
    no time goes into random initialisation that the weights overwrite anyway."""
    try:
        with torch.device("meta"):
            model = MViT(config)
    except (RuntimeError, NotImplementedError):  # some construction step cannot run on meta: initialise normally
        model = MViT(config)
        load_state_dict_strict(model, state_dict, source=source)
        return model
    check_state_dict(model, state_dict, source=source)
    own = model.state_dict()
    state_dict = {k: v.to(dtype=own[k].dtype) for k, v in state_dict.items()}  # e.g. fp16 weights -> fp32
    model.load_state_dict(state_dict, strict=True, assign=True)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a buffer that is not saved in state dicts: rebuild normally rather than return a broken model
        model = MViT(config)
        load_state_dict_strict(model, state_dict, source=source)
    return model


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise one UserError naming the missing/unexpected/mis-shaped keys of state_dict for model."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mis_shaped)):
        if keys:
            shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
            problems.append(f"{what}: {shown}")
    if problems:
        raise UserError(f"{source}: weights do not fit the model ({'; '.join(problems)})")


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict load whose failure is one UserError naming the missing/unexpected/mis-shaped keys."""
    check_state_dict(model, state_dict, source)
    model.load_state_dict(dict(state_dict), strict=True)


def load_model(path: str | os.PathLike, map_location: Any = "cpu", use_ema: bool = False) -> MViT:
    """An eval-mode MViT built and loaded from one of our checkpoints (forward: [B,3,T,H,W] -> logits [B,C])."""
    ckpt = _read_ours(path, map_location=map_location)
    model = build_from_checkpoint(ckpt, path, use_ema=use_ema)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    logger.info("loaded %s (%s weights)", path, "EMA" if use_ema else "model")
    return model.eval()


# ------------------------------------------------------------------------------------ training checkpoints


PREEMPT_NAME = "checkpoint_preempt.pyth"
BEST_NAME = "checkpoint_best.pyth"
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


def best_checkpoint_path(output_dir: str | Path) -> Path:
    """Path of the best-by-validation checkpoint (train.save_best): the weights of the epoch with the highest val
    top-1 so far. Never resumed from (resume takes the latest); `evaluate test.checkpoint=best` tests it."""
    return checkpoint_dir(output_dir) / BEST_NAME


def is_new_best(output_dir: str | Path, history: Sequence[Mapping[str, Any]], epoch: int,
                top1: float | None) -> bool:
    """Whether epoch `epoch`'s val top-1 should replace checkpoint_best.pyth: it beats the val top-1 (metrics.jsonl
    `history`) of the epoch the best checkpoint holds (strictly: on a tie the earlier epoch stays). A best
    checkpoint from an epoch without a val line in the history (redone after a resume from before it: a path not
    taken) or without a readable epoch is replaced."""
    if top1 is None:  # no video decoded: no accuracy to compare
        return False
    path = best_checkpoint_path(output_dir)
    if not path.is_file():
        return True
    held = checkpoint_epoch(path)
    scores = [r.get("top1") for r in history if r.get("split") == "val" and r.get("epoch") == held]
    if held is None or held >= epoch or not scores or scores[-1] is None:
        return True
    return top1 > scores[-1]


def resolve_checkpoint(spec: str, output_dir: str | Path) -> Path:
    """What test.checkpoint names: "" or "latest" -> the latest intact checkpoint of output_dir, "best" -> its
    best-by-validation checkpoint, anything else a path. UserError when the named one does not exist."""
    if spec in ("", "latest"):
        return latest_checkpoint(output_dir)
    if spec == "best":
        path = best_checkpoint_path(output_dir)
        if not path.is_file():
            raise UserError(f"test.checkpoint=best: no {path} (it is written at validation when "
                            f"train.save_best is on); pass test.checkpoint=PATH or latest")
        return path
    return Path(spec)


def epoch_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every epoch checkpoint in <output_dir>/checkpoints, by epoch."""
    d = checkpoint_dir(output_dir)
    if not d.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in d.iterdir() if (m := _EPOCH_RE.search(p.name)))


def prune_checkpoints(output_dir: str | Path, keep: int | None, current: Path,
                      origin: str | Path | None = None) -> list[Path]:
    """Delete all but the `keep` latest epoch checkpoints (train.keep_checkpoints; 0 or None keeps all). `current`
    (the one just written) and `origin` (the one train.resume_from names: the same command must find it again) are
    always kept; the best and the preempt checkpoint are not epoch checkpoints and are never touched. Returns the
    deleted paths. Only rank 0 while holding the run lock calls this."""
    if not keep:
        return []
    found = [p for _, p in epoch_checkpoints(output_dir)]
    kept = {p.resolve() for p in (*found[-keep:], Path(current), *([Path(origin)] if origin else []))}
    removed = []
    for p in found:
        if p.resolve() not in kept:
            # a reader that opened it (evaluate) keeps reading: unlink only drops the name
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        logger.info("train.keep_checkpoints=%d: removed %s", keep, ", ".join(p.name for p in removed))
    return removed


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Make `dst` hold the same bytes as the finished checkpoint `src`, atomically: a hard link (no second copy on
    disk; it survives the deletion of `src` by retention), else a copy, under a temp name renamed over `dst`."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # a filesystem without hard links
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def checkpoint_epoch(path: str | Path) -> int | None:
    """The "epoch" a checkpoint records, read without loading its tensors (mmap); None when unreadable."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(saved.get("epoch")) if isinstance(saved, dict) and saved.get("epoch") is not None else None
    except Exception:  # noqa: BLE001 -- a best-effort probe; the caller treats None as unknown
        return None


def batches_done(ckpt: Mapping[str, Any]) -> int:
    """Global batches of the next epoch a checkpoint has done (its "sampler" position; older checkpoints stored
    a per-process start_index instead, which is > 0 exactly when batches were done)."""
    sampler = ckpt.get("sampler") or {}
    return int(sampler.get("batches_done", sampler.get("start_index", 0)))


def latest_checkpoint(output_dir: str | Path) -> Path:
    """The intact checkpoint furthest into training in `<output_dir>/checkpoints` (what evaluate tests by
    default), found as training's resume finds it: an unreadable newest one is skipped with a warning. UserError
    when there is none."""
    found, _ = load_latest(output_dir)
    if found is None:
        raise UserError(f"no checkpoint in {checkpoint_dir(output_dir)}: pass test.checkpoint=PATH or train first")
    return found


def load_latest(output_dir: str | Path, *, mmap: bool = False) -> tuple[Path | None, dict[str, Any] | None]:
    """(path, contents) of the intact checkpoint furthest into training, or (None, None). An unreadable one
    (torn by a full disk, a foreign file) is skipped with a warning and the previous one is used. `mmap`: load's."""
    d = checkpoint_dir(output_dir)
    if not d.is_dir():
        return None, None
    # (epochs done, batches into the next epoch, epoch checkpoint first on a tie, path)
    candidates = [(int(m.group(1)), 0, 1, p) for p in d.iterdir() if (m := _EPOCH_RE.search(p.name))]
    loaded: dict[Path, dict[str, Any]] = {}
    preempt = d / PREEMPT_NAME
    if preempt.is_file():
        try:
            loaded[preempt] = load(preempt, mmap=mmap)
            candidates.append((int(loaded[preempt].get("epoch", 0)), batches_done(loaded[preempt]), 0, preempt))
        except UserError as e:
            logger.warning("skipping unreadable checkpoint %s: %s", preempt, e)
    for *_, path in sorted(candidates, reverse=True):
        try:
            return path, loaded.get(path) or load(path, mmap=mmap)
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


def load(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """torch.load a checkpoint (weights_only: tensors, numbers, strings); a bad file is a UserError naming it.
    `mmap`: tensors read only when used (torch_load)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    ckpt = torch_load(path, mmap=mmap)  # weights_only; a truncated or foreign file becomes a UserError naming it
    if not isinstance(ckpt, dict):
        raise UserError(f"checkpoint {path} is not a dict of states")
    return ckpt


def save(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write atomically (temp file + rename): a crash never leaves a torn checkpoint under `path`."""
    atomic_torch_save(ckpt, path)
    logger.info("saved checkpoint %s", path)
