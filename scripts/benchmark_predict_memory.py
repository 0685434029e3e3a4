"""Peak memory (RSS) of one Predictor.predict on a large generated video: frames resized while decoding (now)
against every wanted frame decoded at full size first (clips.views, the dataset's one-decode path).

    python scripts/benchmark_predict_memory.py --height 2160 --width 3840 --frames 48 --views 2x1

Each variant runs in a fresh process (peak RSS is per process); prints both peaks and their ratio.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it starts afresh at exec, not at the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(video: str, checkpoint: str, views: str, full_size: bool) -> None:
    import torch

    from mvit_video import predict
    from mvit_video.data import clips

    torch.set_num_threads(1)
    if full_size:  # the previous path: all wanted frames at full size, then resized together
        predict._bounded_views = lambda reader, spec, first=0, last=None: clips.views(reader, spec, first, last)
    predictor = predict.Predictor.from_checkpoint(checkpoint, device="cpu", decoder="pyav")
    before = _peak_mb()
    predictor.predict(video, views=views)
    print(f"{before:.0f} {_peak_mb():.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--height", type=int, default=2160)
    p.add_argument("--width", type=int, default=3840)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--views", default="2x1")
    p.add_argument("--skip-full-size", action="store_true",
                   help="only the bounded path (8K full-size decode needs ~4 GB of frames and 4x that as floats)")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        video, checkpoint, views, full = args.child
        return _child(video, checkpoint, views, full == "1")

    import numpy as np
    import torch

    from mvit_video.checkpoint import make_checkpoint
    from mvit_video.config import build_config, compose
    from mvit_video.data.encode import write_video
    from mvit_video.models import build_model
    from mvit_video.utils.io import atomic_torch_save

    tmp = Path(tempfile.mkdtemp())
    video = tmp / "big.mp4"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (args.height // 8, args.width // 8, 3), dtype=np.uint8)
    frames = np.stack([np.kron(np.roll(base, t, axis=1), np.ones((8, 8, 1), np.uint8)) for t in range(args.frames)])
    write_video(video, frames, fps=30.0)
    del frames
    # a small network with the paper's test input (16 frames every 4, short side 256, crop 224)
    run = build_config(compose(["mvit.depths=[1,2]", "mvit.embed_dim=16", "mvit.num_heads=1",
                                "data.dataset=kinetics", "data.num_frames=16", "data.sampling_rate=4",
                                "data.train_crop_size=224", "data.test_crop_size=224",
                                "data.train_jitter_scales=[256,320]", "model.num_classes=3"]))
    from mvit_video.settings import CheckpointData

    ckpt = tmp / "model.pyth"
    atomic_torch_save(make_checkpoint(build_model(run.model), run.model, CheckpointData.from_run(run).to_dict(), None), ckpt)
    peaks = {}
    variants = (("full-size decode", "1"), ("resize while decoding", "0"))
    for name, full in variants[1:] if args.skip_full_size else variants:
        out = subprocess.run([sys.executable, __file__, "--child", str(video), str(ckpt), args.views, full],
                             capture_output=True, text=True, check=True).stdout.split()
        peaks[name] = float(out[1])
        print(f"{name:>22}: peak RSS {out[1]} MB (after loading the model: {out[0]} MB)")
    if args.skip_full_size:
        return
    ratio = peaks["full-size decode"] / peaks["resize while decoding"]
    print(f"{args.width}x{args.height}, {args.frames} frames, {args.views} views: peak RSS ratio {ratio:.2f}x")


if __name__ == "__main__":
    main()
