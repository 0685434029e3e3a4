#!/usr/bin/env python
"""Classify videos with a trained checkpoint: top-k class names with probabilities, per video or per time window.

    python scripts/infer.py --checkpoint outputs/tiny_synthetic/checkpoints/checkpoint_epoch_00010.pyth clip.mp4
    python scripts/infer.py --checkpoint ckpt.pyth --views 5x3 --topk 3 --json a.mp4 b.webm
    python scripts/infer.py --checkpoint ckpt.pyth --window 4 long_video.mp4     # a timeline of 4 s windows

Views are sampled as at test time (REFERENCE §4-5): K temporal clips x S spatial crops, the video's score is the
mean of the views' softmax. Each video (or window) is decoded once for all its views. A file that is missing or not
a video prints `error: <path>: <why>` and the exit code is 2; the other videos are still classified.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import torch

from mvit_video.data.decoding import VideoReader, open_video
from mvit_video.data.sampling import segment_indices, test_clip_indices, union_indices
from mvit_video.data.transforms import multi_view_crops, test_short_side
from mvit_video.eval.multiview import mean_view_probs
from mvit_video.utils.errors import UserError, cli_errors


def parse_views(text: str) -> tuple[int, int]:
    """"KxS" -> (K temporal clips, S spatial crops); S is 1 or 3."""
    try:
        k, s = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--views must look like 5x1 or 1x3, got {text!r}")
    if k < 1 or s not in (1, 3):
        raise argparse.ArgumentTypeError(f"--views {text}: need K >= 1 temporal clips and S = 1 or 3 crops")
    return k, s


def default_views(data_config: dict[str, Any]) -> tuple[int, int]:
    """The paper's test views: 1x3 for SSv2, 5x1 for Kinetics-style data."""
    return (1, 3) if data_config.get("dataset") == "ssv2" else (5, 1)


def temporal_views(num_frames_in_range: int, fps: float, k: int, dc: dict[str, Any]) -> list[list[int]]:
    """Frame indices (relative to the range start) of the K temporal test clips over a range of frames."""
    if dc.get("dataset") == "ssv2":  # segment sampling: the views take different points of each segment
        return [segment_indices(num_frames_in_range, dc["num_frames"], False, v, k) for v in range(k)]
    return [
        test_clip_indices(num_frames_in_range, fps, v, k, dc["num_frames"], dc["sampling_rate"], dc["target_fps"],
                          dc["use_offset_sampling"])
        for v in range(k)
    ]


def build_views(reader: VideoReader, first: int, last: int, k: int, s: int, dc: dict[str, Any]) -> torch.Tensor:
    """The K*S normalised views [K*S,3,T,crop,crop] of frames [first, last) of `reader`, decoded in one call."""
    clips = [[first + i for i in clip] for clip in temporal_views(last - first, reader.fps, k, dc)]
    wanted, positions = union_indices(clips)
    frames = reader.get_frames(wanted)  # [F,H,W,3], one decode for every view
    crop = int(dc["test_crop_size"])
    # REFERENCE §8: 3 crops -> short side = crop size; 1 crop -> short side = train_jitter_scales[0], center crop
    short_side = test_short_side(crop, s, dc.get("train_jitter_scales") or [crop])
    # view v = temporal v // S, spatial v % S
    return multi_view_crops(frames, positions, crop, s, dc["mean"], dc["std"], short_side)


def topk_entries(probs: torch.Tensor, k: int, names: Sequence[str] | None) -> list[dict[str, Any]]:
    """[{"class_index", "name", "prob"}] of the k most probable classes, best first."""
    values, indices = probs.topk(min(k, probs.numel()))
    return [
        {"class_index": int(i), "name": names[i] if names and i < len(names) else str(int(i)), "prob": float(p)}
        for p, i in zip(values.tolist(), indices.tolist())
    ]


def classify(model: torch.nn.Module, path: str, args: argparse.Namespace, dc: dict[str, Any],
             names: Sequence[str] | None, device: torch.device) -> dict[str, Any]:
    """Top-k of the whole video, and of each window when --window is given."""
    k, s = args.views
    with open_video(path, decoder=args.decoder) as reader:
        if not reader.fps > 0:
            raise UserError(f"{path}: unknown frame rate; cannot place the views in time")
        out: dict[str, Any] = {"video": path, "duration": round(reader.duration, 3), "fps": reader.fps}
        probs = mean_view_probs(model, [build_views(reader, 0, reader.num_frames, k, s, dc)], device)[0]
        out["topk"] = topk_entries(probs, args.topk, names)
        if args.window:
            frames_per_window = max(1, round(args.window * reader.fps))
            out["windows"] = []
            for a in range(0, reader.num_frames, frames_per_window):  # one window at a time: bounded memory
                b = min(a + frames_per_window, reader.num_frames)
                p = mean_view_probs(model, [build_views(reader, a, b, k, s, dc)], device)[0]
                out["windows"].append({"start": round(a / reader.fps, 3), "end": round(b / reader.fps, 3),
                                       "topk": topk_entries(p, args.topk, names)})
    return out


def print_text(result: dict[str, Any], views: tuple[int, int]) -> None:
    """Human-readable report of one video."""
    print(f"{result['video']}  ({result['duration']:.1f} s, {views[0]}x{views[1]} views)")
    width = max(len(e["name"]) for e in result["topk"])
    for rank, e in enumerate(result["topk"], 1):
        print(f"  {rank}. {e['name']:<{width}}  {e['prob']:.3f}")
    if result.get("windows"):
        print("  timeline:")
    for w in result.get("windows", []):
        best = w["topk"][0]
        print(f"  {w['start']:8.1f} -{w['end']:7.1f} s: {best['name']}  {best['prob']:.3f}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to classify")
    p.add_argument("--checkpoint", required=True, help="an mvit_video checkpoint (ours, or converted)")
    p.add_argument("--topk", type=int, default=5, help="classes to print per video (default 5)")
    p.add_argument("--views", type=parse_views, default=None,
                   help="KxS temporal clips x spatial crops (default: 5x1, or 1x3 for SSv2 checkpoints)")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="also classify consecutive non-overlapping windows of this length, each with the KxS views "
                   "(a timeline)")
    p.add_argument("--json", action="store_true", help="print one JSON document for all videos")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--decoder", choices=["decord", "pyav"], default="decord")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    args = p.parse_args(argv)
    if args.topk < 1:
        p.error("--topk must be >= 1")
    if args.window is not None and not args.window > 0:
        p.error("--window must be a positive number of seconds")
    return args


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Classify every video; a bad video prints one error line and makes the exit code 2."""
    from mvit_video.models import load_checkpoint_info, load_model

    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    info = load_checkpoint_info(args.checkpoint)
    dc = info.get("data_config")
    if not dc:
        raise UserError(f"{args.checkpoint}: the checkpoint has no data_config; cannot sample views")
    names = info.get("class_names")
    args.views = args.views or default_views(dc)
    model = load_model(args.checkpoint, use_ema=args.ema).to(device).eval()

    results, errors = [], []
    for path in args.videos:
        try:
            result = classify(model, path, args, dc, names, device)
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
