"""Convert a PySlowFast (.pyth) or torchvision (mvit_v2_s .pth) MViTv2 checkpoint into an mvit_video checkpoint.

    mvit-convert --from slowfast MVITv2_S_16x4_k400_f302660347.pyth mvitv2_s_k400.pyth
    mvit-convert --from slowfast --config MVITv2_B_32x3.yaml K400_MVITv2_B_32x3.pyth out.pyth
    mvit-convert --from torchvision --verify mvit_v2_s-ae3be167.pth mvit_v2_s_k400.pyth

The result loads with `mvit_video.load_model(DST)`. After writing, the file is read back, the network is
built from it and the weights are loaded strictly; `--verify` (torchvision) also runs torchvision's network and
ours on the same random clip and prints the largest logit difference.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from mvit_video.utils.errors import UserError, cli_errors
from mvit_video.utils.helptext import from_docstring
from mvit_video.utils.io import atomic_torch_save  # torch only when called

if TYPE_CHECKING:
    from mvit_video.models.mvit import MViT

# torch, the checkpoint format and the converters are imported in the functions that use them: `--help` and a
# wrong option answer at once.


def read_class_names(path: Path) -> list[str]:
    """One class name per line (blank lines ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read class names ({e.strerror or e})") from e
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise UserError(f"{path}: no class names in it")
    return names


def _is_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _refuse_ours(ckpt: Any, path: Path) -> None:
    from mvit_video.checkpoint import FORMAT

    if isinstance(ckpt, Mapping) and ckpt.get("format") == FORMAT:
        raise UserError(f"{path}: already an mvit_video checkpoint; nothing to convert")


def convert_slowfast(args: argparse.Namespace) -> tuple[MViT, Any, dict, dict]:
    """(model, config, data_config, source info) from a PySlowFast .pyth and its yaml."""
    from mvit_video.checkpoint import build_with_weights, torch_load
    from mvit_video.models.convert import config_from_slowfast_yaml, from_slowfast, slowfast_input_is_bgr

    ckpt = torch_load(args.src)
    _refuse_ours(ckpt, args.src)
    if isinstance(ckpt, Mapping) and "model_state" in ckpt:
        state_dict, stored_cfg = ckpt["model_state"], ckpt.get("cfg")
    elif _is_state_dict(ckpt):
        if any(k.startswith(("conv_proj.", "pos_encoding.")) for k in ckpt):
            raise UserError(f"{args.src}: these are torchvision MViT weights; use --from torchvision")
        state_dict, stored_cfg = ckpt, None
    else:
        raise UserError(f"{args.src}: not a PySlowFast checkpoint (no 'model_state' in it)")
    if args.config is not None:
        try:
            yaml_text = args.config.read_text(encoding="utf-8")
        except OSError as e:
            raise UserError(f"{args.config}: cannot read ({e.strerror or e})") from e
        source, base_dir = str(args.config), args.config.parent
    elif isinstance(stored_cfg, str) and stored_cfg.strip():
        yaml_text, source, base_dir = stored_cfg, f"{args.src} (stored cfg)", None
    else:
        raise UserError(f"{args.src}: holds no 'cfg'; pass the PySlowFast yaml it was trained with via --config")
    config, data_config = config_from_slowfast_yaml(
        yaml_text, num_frames=args.num_frames, crop_size=args.crop_size, source=source, base_dir=base_dir
    )
    bgr = slowfast_input_is_bgr(yaml_text, source=source, base_dir=base_dir)
    converted = from_slowfast(state_dict, source=str(args.src), reverse_input_channel=bgr)
    model = build_with_weights(config, converted, source=f"{args.src} with {source}")
    epoch = ckpt.get("epoch") if isinstance(ckpt, Mapping) else None
    info = {"from": "slowfast", "path": str(args.src), "epoch": epoch}
    return model, config, data_config, info


def convert_torchvision(args: argparse.Namespace) -> tuple[MViT, Any, dict, dict]:
    """(model, config, data_config, source info) from a torchvision mvit_v2_s state dict."""
    from mvit_video.checkpoint import build_with_weights, torch_load
    from mvit_video.models.convert import (from_torchvision, torchvision_config, torchvision_data_config,
                                           torchvision_input_size)

    ckpt = torch_load(args.src)
    _refuse_ours(ckpt, args.src)
    if isinstance(ckpt, Mapping) and "model" in ckpt and _is_state_dict(ckpt["model"]):
        ckpt = ckpt["model"]  # torchvision's reference training scripts save {"model": ..., "optimizer": ...}
    if not _is_state_dict(ckpt):
        raise UserError(f"{args.src}: not a torchvision state dict (expected a dict of tensors)")
    state_dict = from_torchvision(ckpt)
    frames, crop = torchvision_input_size(ckpt)
    for flag, given, found in (("--num-frames", args.num_frames, frames), ("--crop-size", args.crop_size, crop)):
        if given is not None and given != found:
            raise UserError(
                f"{args.src}: {flag} {given} does not match the weights, whose rel-pos tables were built for "
                f"{frames} frames x {crop}px"
            )
    if "head.projection.weight" not in state_dict:
        raise UserError(f"{args.src}: no head.1.weight (classifier) in the torchvision weights")
    num_classes = state_dict["head.projection.weight"].shape[0]
    config = torchvision_config(frames, crop, num_classes=num_classes)
    model = build_with_weights(config, state_dict, source=str(args.src))
    if args.verify:
        # torchvision's network on the source weights, against ours on the converted ones
        diff = verify_torchvision(config, model, ckpt)
        print(f"verify: max |logit difference| torchvision vs mvit_video = {diff:.3g}")
        if diff > 1e-4:
            raise UserError(f"verify failed: logits differ by {diff:.3g} (> 1e-4); nothing written")
    return model, config, torchvision_data_config(frames, crop), {"from": "torchvision", "path": str(args.src)}


def verify_torchvision(config: Any, model: MViT, source_sd: Mapping) -> float:
    """Run torchvision's network (source weights) and ours on one random clip; largest logit difference."""
    import torch

    from mvit_video.models.convert import torchvision_mvit

    with torch.device("meta"):  # no random init: every weight comes from the source file
        reference = torchvision_mvit(config)
    reference.load_state_dict({k: v.float() for k, v in source_sd.items()}, strict=True, assign=True)
    reference.eval()
    model.eval()
    size = (1, 3, config.num_frames, config.crop_size, config.crop_size)
    x = torch.randn(size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return (reference(x) - model(x)).abs().max().item()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(**from_docstring("convert_checkpoint", __doc__))
    p.add_argument("--from", dest="source", required=True, choices=["slowfast", "torchvision"], help="source format")
    p.add_argument("--config", type=Path, help="PySlowFast yaml the .pyth was trained with (default: its stored cfg)")
    p.add_argument("--num-frames", type=int, help="frames the source network was built for (default: from config)")
    p.add_argument("--crop-size", type=int, help="crop size the source network was built for (default: from config)")
    p.add_argument("--class-names", type=Path, help="text file, one class name per line, in label order")
    p.add_argument("--verify", action="store_true", help="torchvision: compare logits of both networks")
    p.add_argument("src", type=Path, help="source checkpoint")
    p.add_argument("dst", type=Path, help="output mvit_video checkpoint")
    return p.parse_args(argv)


@cli_errors
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from mvit_video.checkpoint import load_model, make_checkpoint
    from mvit_video.models.convert import torchvision_class_names

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # stderr: errors only
    if args.config is not None and args.source != "slowfast":
        raise UserError("--config is for --from slowfast only (torchvision weights are always mvit_v2_s)")
    if args.verify and args.source != "torchvision":
        raise UserError("--verify runs torchvision's network, so it needs --from torchvision")
    if args.src.resolve() == args.dst.resolve():
        raise UserError(f"{args.dst}: output would overwrite the source checkpoint")

    given_names = read_class_names(args.class_names) if args.class_names is not None else None

    if args.source == "slowfast":
        model, config, data_config, info = convert_slowfast(args)
        class_names = None  # a .pyth does not say which label index is which class
    else:
        model, config, data_config, info = convert_torchvision(args)
        class_names = torchvision_class_names() if config.num_classes == 400 else None
    if given_names is not None:
        class_names = given_names
        if len(class_names) != config.num_classes:
            raise UserError(
                f"{args.class_names}: {len(class_names)} class names, but the model has {config.num_classes} classes"
            )

    ckpt = make_checkpoint(model, config, data_config, class_names)
    ckpt["source"] = info
    atomic_torch_save(ckpt, args.dst)

    # Read back what was written: the network builds from the file alone and every weight loads strictly.
    loaded = load_model(args.dst)
    params = sum(p.numel() for p in loaded.parameters())
    print(
        f"wrote {args.dst}: MViT depth {config.depth}, {params / 1e6:.2f} M params, {config.num_classes} classes, "
        f"built for {config.num_frames}x{config.crop_size}^2, "
        f"class names: {'yes' if class_names else 'no (add them with --class-names FILE)'}"
    )


if __name__ == "__main__":
    sys.exit(main())
