"""Initial weights for fine-tuning (train.checkpoint_file_path): any checkpoint the converter understands
(mvit_video.models.convert: ours, PySlowFast's, torchvision's) or named pretrained weights, loaded into a network
whose classifier may have another size; a kept classifier's classes matched to the data's."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from mvit_video.checkpoint.format import FORMAT, check_finite, load, plain
from mvit_video.models import convert
from mvit_video.models.mvit import MViT
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

# Our state dict from any checkpoint dict: the converter tells the formats apart (timm's checkpoint_filter_fn).
pretrained_state_dict = convert.to_mvit_state_dict


def named_checkpoint(name: str) -> dict[str, Any]:
    """An mvit_video checkpoint dict (as convert_checkpoint writes) of the pretrained weights `name`, e.g.
    "torchvision:mvit_v2_s": torchvision's Kinetics-400 weights, fetched by its weights API into its cache (or read
    from there), converted (models.convert.named_weights)."""
    weights = convert.named_weights(name)
    return {
        "format": FORMAT,
        "model": weights["model"],
        "model_config": plain(dataclasses.asdict(weights["model_config"])),
        "data_config": weights["data_config"],
        "class_names": weights["class_names"],
        "source": weights["source"],
    }


def classifier_keys(model: MViT) -> set[str]:
    """The state-dict keys of the network's classifier (model.get_classifier()): the weights that fine-tuning on
    another number of classes re-initialises."""
    classifier = model.get_classifier()
    prefix = next(name for name, module in model.named_modules() if module is classifier)
    return {f"{prefix}.{key}" for key in classifier.state_dict()}


def load_pretrained(model: MViT, path: str | Path) -> None:
    """Load initial weights for fine-tuning; classifier weights of another shape are dropped (the classifier,
    model.get_classifier(), stays re-initialised).

    Accepts what pretrained_state_dict does: ours, PySlowFast's and torchvision's checkpoints (the foreign ones
    through the converter, as scripts/convert_checkpoint.py), and named weights ("torchvision:mvit_v2_s",
    named_checkpoint: fetched through torchvision's weights API, converted)."""
    ckpt = named_checkpoint(path) if convert.is_weights_name(path) else load(path)
    state = pretrained_state_dict(ckpt, path)
    check_finite(state, path)
    own = model.state_dict()
    classifier = classifier_keys(model)
    dropped = []
    for key in list(state):
        if key in own and own[key].shape != state[key].shape:
            if key not in classifier:
                raise UserError(f"checkpoint {path}: '{key}' has shape {tuple(state[key].shape)}, the model "
                                f"expects {tuple(own[key].shape)} (is it the same architecture?)")
            dropped.append((key, tuple(state[key].shape)))
            del state[key]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if dropped:
        logger.info("fine-tuning from %s: head re-initialised for %d classes (checkpoint head %s)", path,
                    model.get_classifier().out_features, dropped[0][1])
    else:
        logger.info("initialised weights from %s", path)
    # The head keys we dropped are "missing" on purpose; anything else missing means the wrong file.
    missing = [k for k in missing if k not in {k for k, _ in dropped}]
    if missing or unexpected:
        raise UserError(f"checkpoint {path} does not match the model: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]} (convert foreign checkpoints with scripts/convert_checkpoint.py)")


def match_pretrained_classes(model: MViT, path: str | Path, class_names: Sequence[str] | None,
                             reinit_head: bool = False) -> None:
    """Fine-tuning (after load_pretrained): a head kept from `path` (same size) must score the data's classes.
    When the checkpoint names its classes and they differ from the data's (`class_names`): the same classes in
    another order -> the head's rows are reordered to the data's order; other classes -> ConfigError naming both,
    unless `reinit_head` (train.reinit_head), which re-initialises the head instead. A head of another size was
    already re-initialised by load_pretrained; a checkpoint without class names cannot be checked."""
    head = model.get_classifier()
    if not reinit_head and not class_names:
        return
    theirs = None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # names only: no tensor read
        theirs = saved.get("class_names") if isinstance(saved, Mapping) else None
    except Exception:  # noqa: BLE001 -- load_pretrained read it already; a foreign format carries no names
        theirs = None
    ours = list(class_names or [])
    if not (isinstance(theirs, list) and len(theirs) == head.out_features):
        theirs = None  # another head size (re-initialised already) or no names to compare
    if reinit_head:
        model.reset_classifier(head.out_features)
        logger.info("train.reinit_head: the classifier of %s is re-initialised for the data's %d classes", path,
                    head.out_features)
        return
    if theirs is None or not ours or theirs == ours:
        return
    if sorted(theirs) == sorted(ours) and len(set(ours)) == len(ours):
        order = torch.tensor([theirs.index(name) for name in ours], device=head.weight.device)
        with torch.no_grad():
            head.weight.copy_(head.weight[order])
            if head.bias is not None:
                head.bias.copy_(head.bias[order])
        logger.info("fine-tuning from %s: its classifier's rows reordered to the data's class order", path)
        return
    other = [name for name in ours if name not in theirs]
    why = f"; e.g. {other[0]!r} is not among the checkpoint's" if other else ""
    raise ConfigError(f"train.checkpoint_file_path {path}: its {len(theirs)}-class head scores other classes "
                      f"({_names(theirs)}) than the data's class list ({_names(ours)}{why}); set "
                      f"train.reinit_head=true to fine-tune with a new head")


def _names(names: Sequence[str], n: int = 4) -> str:
    return ", ".join(repr(x) for x in list(names)[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")
