"""Our checkpoint format: one dict holding the weights, the network config, the data config and the class names.

```
{"format": "mvit_video/1",
 "model": state_dict,                 # weights of the network as trained
 "model_config": asdict(MViTConfig),  # enough to rebuild the network without any config file
 "data_config": {...},                # how inputs were sampled/normalised (data_config_from_cfg)
 "class_names": list[str] | None,
 ...}                                 # training adds epoch, optimizer, scheduler, ema, rng, cfg, ...
```
Everything in it is tensors and plain python, so `torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from mvit_video.models.mvit import MViT, MViTConfig
from mvit_video.utils.errors import UserError

logger = logging.getLogger(__name__)

FORMAT = "mvit_video/1"

# Keys of data_config, in the order of INTERFACES.md (cfg.data.<key>).
DATA_CONFIG_KEYS = (
    "num_frames",
    "sampling_rate",
    "target_fps",
    "train_crop_size",
    "test_crop_size",
    "mean",
    "std",
    "dataset",
    "use_offset_sampling",
    "train_jitter_scales",
)

# Prefixes that wrappers add to parameter names: DDP, torch.compile, FSDP/activation-checkpoint wrappers.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_WRAPPER_INFIXES = ("_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")


def _plain(value: Any) -> Any:
    """OmegaConf containers/tuples -> plain lists/dicts, so the value survives torch.load(weights_only=True)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def data_config_from_cfg(cfg: Any) -> dict:
    """The data settings a checkpoint carries (cfg.data.<key> for DATA_CONFIG_KEYS), as plain python."""
    data = cfg.data
    out = {}
    for key in DATA_CONFIG_KEYS:
        if key not in data:
            raise UserError(f"config has no data.{key}; it is needed to describe the checkpoint's inputs")
        out[key] = _plain(data[key])
    return out


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
        "model_config": _plain(dataclasses.asdict(config)),
        "data_config": _plain(dict(data_config)),
        "class_names": class_names,
    }


def strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop `module.`/`_orig_mod.` prefixes and `_checkpoint_wrapped_module.` infixes added by wrappers."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        for infix in _WRAPPER_INFIXES:
            key = key.replace(infix, "")
        out[key] = value
    return out


def torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """torch.load(weights_only=True) with every failure turned into a UserError that names the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
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
    return dict(ckpt)


def load_checkpoint_info(path: str | os.PathLike) -> dict:
    """model_config, data_config, class_names (and epoch when saved by training) of a checkpoint."""
    ckpt = _read_ours(path)
    info = {
        "format": ckpt["format"],
        "model_config": ckpt["model_config"],
        "data_config": ckpt.get("data_config"),
        "class_names": ckpt.get("class_names"),
    }
    for key in ("epoch", "iteration", "source"):
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
    model.class_names = ckpt.get("class_names")  # type: ignore[attr-defined]  # handy for inference scripts
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    logger.info("loaded %s (%s weights)", path, "EMA" if use_ema else "model")
    return model.eval()
