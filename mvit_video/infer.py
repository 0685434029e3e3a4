"""Classify videos with a trained checkpoint: top-k class names with probabilities, per video or per time window.

    mvit-infer --checkpoint outputs/tiny_synthetic/checkpoints/checkpoint_epoch_00010.pyth clip.mp4
    mvit-infer --checkpoint ckpt.pyth --views 5x3 --topk 3 --json a.mp4 b.webm
    mvit-infer --checkpoint ckpt.pyth --window 4 long_video.mp4     # a timeline of 4 s windows

A thin CLI over `mvit_video.Predictor` (mvit_video/predict.py): views are sampled as at test time (REFERENCE §4-5),
K temporal clips x S spatial crops, the video's score is the mean of the views' softmax. Clip settings come from
the checkpoint unless overridden (the line on stderr says which). Each video (or window) is decoded once for all its
views. A file that is missing or not a video prints `error: <path>: <why>` and the exit code is 2; the other videos
are still classified.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mvit_video.utils.errors import UserError, cli_errors
from mvit_video.utils.helptext import from_docstring
from mvit_video.utils.text import printable

if TYPE_CHECKING:
    from mvit_video.predict import Predictor

# mvit_video.predict (torch, torchvision, the decoders) is imported where it is used: `--help` and a wrong option
# answer at once.


def parse_views(text: str) -> tuple[int, int]:
    """"KxS" -> (K temporal clips, S spatial crops), as an argparse type."""
    from mvit_video.predict import parse_views as _parse_views

    try:
        return _parse_views(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(f"--{e}") from None


def classify(predictor: Predictor, path: str, args: argparse.Namespace) -> dict[str, Any]:
    """Top-k of the whole video, and of each window when --window is given (JSON-ready)."""
    out = predictor.predict(path, views=args.views, topk=args.topk).to_dict()
    if args.window:
        out["windows"] = [w.to_dict() for w in predictor.timeline(path, args.window, args.views, args.topk)]
    return out


def print_text(result: dict[str, Any], views: tuple[int, int]) -> None:
    """Human-readable report of one video; the timeline lists each window's top-k. Names and paths are printed
    with control characters escaped (printable): a class name cannot drive the terminal."""
    print(f"{printable(result['video'])}  ({result['duration']:.1f} s, {views[0]}x{views[1]} views)")
    names = [printable(e["name"]) for e in result["topk"]]
    width = max(len(n) for n in names)
    for rank, (name, e) in enumerate(zip(names, result["topk"]), 1):
        print(f"  {rank}. {name:<{width}}  {e['prob']:.3f}")
    if result.get("windows"):
        print("  timeline:")
    for w in result.get("windows", []):
        classes = ", ".join(f"{printable(e['name'])} {e['prob']:.3f}" for e in w["topk"])
        print(f"  {w['start']:8.1f} -{w['end']:7.1f} s: {classes}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(**from_docstring("infer", __doc__))
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to classify")
    p.add_argument("--checkpoint", required=True, help="an mvit_video checkpoint (ours, or converted), or "
                   "torchvision:mvit_v2_s (torchvision's K400 weights, fetched into its cache)")
    p.add_argument("--topk", type=int, default=5, help="classes to print per video (default 5)")
    p.add_argument("--views", type=parse_views, default=None,
                   help="KxS temporal clips x spatial crops (default: the test views the checkpoint records; "
                   "older checkpoints: 5x1, or 1x3 for SSv2)")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="also classify consecutive non-overlapping windows of this length, each with the KxS views "
                   "(a timeline)")
    p.add_argument("--num-frames", type=int, default=None, help="frames per clip (default: the checkpoint's)")
    p.add_argument("--sampling-rate", type=int, default=None, help="frame stride at 30 fps (default: the checkpoint's)")
    p.add_argument("--crop-size", type=int, default=None, help="test crop (default: the checkpoint's)")
    p.add_argument("--json", action="store_true", help="print one JSON document for all videos")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--decoder", choices=["decord", "pyav"], default="decord")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    args = p.parse_args(argv)
    if args.topk < 1:
        p.error("--topk must be >= 1")
    return args


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Classify every video; a bad video prints one error line and makes the exit code 2."""
    args = parse_args(argv)
    from mvit_video.predict import Predictor, check_window

    if args.window is not None:
        try:
            check_window(args.window)
        except UserError as e:
            raise UserError(f"--{e}") from None  # one line, before the checkpoint is loaded
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, use_ema=args.ema, views=args.views,
                                          decoder=args.decoder, num_frames=args.num_frames,
                                          sampling_rate=args.sampling_rate, crop_size=args.crop_size)
    print(f"{args.checkpoint}: {predictor.describe()}", file=sys.stderr)
    args.views = predictor.settings["views"]

    results, errors = [], []
    for path in args.videos:
        try:
            result = classify(predictor, path, args)
        except UserError as e:  # VideoDecodeError: the message starts with the path
            message = str(e) if str(e).startswith(path) else f"{path}: {e}"
            print(f"error: {message}", file=sys.stderr)
            errors.append({"video": path, "error": message})
            continue
        results.append(result)
        if not args.json:
            print_text(result, args.views)
    if args.json:
        doc = {"checkpoint": str(args.checkpoint), "views": list(args.views), "videos": results, "errors": errors}
        print(json.dumps(doc, indent=2))
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
