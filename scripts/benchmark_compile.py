"""Compile time of the first train step (forward + backward), whole-network vs regional compilation.

    python scripts/benchmark_compile.py --model tiny|s [--modes full,regional] [--backend inductor] [--frames 4 --size 64]
                                        [--restart]

Each mode runs in a fresh process (no shared caches; Inductor's and Triton's on-disk caches are pointed into new temp
dirs), and reports CPU-seconds (process_time) and wall seconds of the first step, the fastest of the next 3, and
Dynamo's graph count. --restart adds, per mode, what a resumed or requeued run does (mode "<mode>+cache"): the first process saves
the compiler's cache artifacts as training does beside its checkpoints (engine/compile.py), and another fresh process,
with empty local caches (a requeue may land on another node), loads them before its first step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(model_name: str, mode: str, backend: str, frames: int, size: int, device: str,
        save_to: str | None = None, load_from: str | None = None) -> dict:
    import torch

    from mvit_video.engine import compile as comp
    from mvit_video.models import build_model

    if model_name == "tiny":
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
        from tiny import tiny_config

        config = tiny_config(num_frames=frames, num_classes=5, crop_size=size)
    else:
        from mvit_video.config import build_config, compose

        cfg = compose([f"+experiment=k400_{model_name}_16x4" if model_name == "s" else f"+experiment=k400_{model_name}",
                       f"data.num_frames={frames}", f"data.train_crop_size={size}", f"data.test_crop_size={size}",
                       "output_dir=unused"])
        config = build_config(cfg).model
    torch.manual_seed(0)
    model = build_model(config).to(device).train()
    loaded = bool(load_from) and comp.load_cache_artifacts(Path(load_from), torch.device(device))
    fwd = comp.compile_model(model, mode, backend=backend)
    x = torch.randn(1, 3, frames, size, size, device=device)

    def step() -> None:
        fwd(x).sum().backward()

    from torch._dynamo.utils import counters

    times = []
    for _ in range(4):
        c0, w0 = time.process_time(), time.perf_counter()
        step()
        times.append((time.process_time() - c0, time.perf_counter() - w0))
    if save_to:
        comp.save_cache_artifacts(Path(save_to), torch.device(device))
    return {"model": model_name, "mode": mode + ("+cache" if load_from else ""), "cache_loaded": loaded,
            "backend": backend, "input": [frames, size], "blocks": len(model.blocks),
            "block_shapes": comp.distinct_block_shapes(model), "first_step_cpu_s": round(times[0][0], 2),
            "first_step_wall_s": round(times[0][1], 2), "later_step_cpu_s": round(min(t[0] for t in times[1:]), 3),
            "unique_graphs": int(counters["stats"]["unique_graphs"]), "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="tiny | s | b_32x3 | l_40x3_312")
    p.add_argument("--modes", default="full,regional")
    p.add_argument("--backend", default="inductor")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--restart", action="store_true", help="also time a restarted process that loads the cache")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--save-to", help=argparse.SUPPRESS)
    p.add_argument("--load-from", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(one(a.model, a.child, a.backend, a.frames, a.size, a.device, a.save_to, a.load_from)))
        return
    for mode in a.modes.split(","):
        run_dir = tempfile.mkdtemp(prefix="compile-run-")  # stands for a run's output_dir (cache beside checkpoints)
        phases = [["--save-to", run_dir]] if a.restart else [[]]
        if a.restart:
            phases.append(["--load-from", run_dir])
        for extra in phases:
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(prefix="inductor-"),
                       TRITON_CACHE_DIR=tempfile.mkdtemp(prefix="triton-"))
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--model", a.model, "--backend", a.backend,
                                  "--frames", str(a.frames), "--size", str(a.size), "--device", a.device, *extra],
                                 env=env, capture_output=True, text=True)
            print(out.stdout.strip().splitlines()[-1] if out.returncode == 0
                  else f"{mode}: failed\n{out.stderr[-3000:]}", flush=True)


if __name__ == "__main__":
    main()
