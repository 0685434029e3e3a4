#!/usr/bin/env python
"""Train-step (forward + backward) time and peak memory: our MViTv2 vs torchvision's MViT, same weights.

torchvision's `mvit_v2_s` builder fixes 16x224^2, so its `MViT` class is built with the mvit_v2_s block settings
for the requested size (`mvit_video.models.convert.torchvision_mvit`); our model gets the same weights through
`from_torchvision`, and both see the same input and labels.

Time: median over --steps train steps (after --warmup), both models timed alternately in this process; wall
time and process CPU time (all threads) are printed, the latter being steadier on a machine shared with others.
Peak memory: each model runs one warmup step and one measured step in a fresh subprocess; the number is the rise
of the process's peak resident set size (Linux VmHWM, reset through /proc/self/clear_refs right before the
measured step) over the resident size just before it: activations, gradients and temporaries of one train step
(weights and the input are already resident). The child runs with MALLOC_MMAP_THRESHOLD_=65536 so that glibc
returns freed blocks to the OS and the resident size follows the live allocations. CUDA: torch.cuda.max_memory_allocated over the step instead.

    python scripts/benchmark_model.py                      # 16x224^2 (the paper's S input), batch 1, 2 threads, CPU
    python scripts/benchmark_model.py --frames 8 --crop 160 --batch 2      # a smaller, quicker problem
    python scripts/benchmark_model.py --device cuda --batch 4 --amp bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F


def build_pair(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """(ours, torchvision) with identical weights, for args.frames x args.crop^2 inputs."""
    import dataclasses

    from mvit_video.models import MViT
    from mvit_video.models.convert import from_torchvision, torchvision_config, torchvision_mvit

    torch.manual_seed(0)
    config = torchvision_config(num_frames=args.frames, crop_size=args.crop, num_classes=args.classes)
    # No stochastic depth: random branch dropping would make the two models (and steps) do different work.
    config = dataclasses.replace(config, droppath_rate=0.0, attention=args.attention)
    tv = torchvision_mvit(config)
    ours = MViT(config)
    ours.load_state_dict(from_torchvision(tv.state_dict()))
    return ours, tv, config


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None) -> None:
    """One forward + backward (no optimizer step), gradients freed before."""
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    if x.is_cuda:
        torch.cuda.synchronize()


def _inputs(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.frames, args.crop, args.crop, generator=g)
    y = torch.randint(0, args.classes, (args.batch,), generator=g)
    return x.to(device), y.to(device)


def _amp(args: argparse.Namespace) -> torch.dtype | None:
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(args: argparse.Namespace, which: str) -> float:
    """Peak memory (MiB) of one train step of `which` (ours|torchvision); run in a fresh process."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours, tv, _ = build_pair(args)
    model = (ours if which == "ours" else tv).to(device).train()
    del ours, tv
    x, y = _inputs(args, device)
    train_step(model, x, y, _amp(args))  # warmup: lazy allocations, kernel selection
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_step(model, x, y, _amp(args))
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (peak RSS) to the current RSS
    base = _status_kb("VmRSS")
    train_step(model, x, y, _amp(args))
    return (_status_kb("VmHWM") - base) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--attention", choices=["fused", "plain"], default="fused", help="our attention path")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--_memory-of", dest="memory_of", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_of:  # child process: print one number
        print(json.dumps(measure_memory(args, args.memory_of)))
        return

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours, tv, config = build_pair(args)
    ours, tv = ours.to(device).train(), tv.to(device).train()
    x, y = _inputs(args, device)
    amp = _amp(args)

    # Same function: eval-mode logits agree (dropout off).
    with torch.no_grad():
        ours.eval(), tv.eval()
        diff = (ours(x) - tv(x)).abs().max().item()
        ours.train(), tv.train()

    times: dict[str, list[float]] = {"ours": [], "torchvision": []}
    cpu_times: dict[str, list[float]] = {"ours": [], "torchvision": []}
    models = {"ours": ours, "torchvision": tv}
    for step in range(args.warmup + args.steps):
        for name, model in models.items():
            t0, c0 = time.perf_counter(), time.process_time()
            train_step(model, x, y, amp)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - t0)
                cpu_times[name].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in times.items()}
    # Process CPU time (all threads) is less sensitive than wall time to other processes on a shared machine.
    cpu = {k: statistics.median(v) for k, v in cpu_times.items()}

    mem: dict[str, float | None] = {"ours": None, "torchvision": None}
    if not args.no_memory:
        for name in mem:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--_memory-of", name]
            # glibc: serve every allocation >= 64 KiB by mmap and unmap it on free, so the resident size follows
            # live memory (otherwise freed heap from the warmup step is reused and the peak goes unseen).
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            mem[name] = float(out.strip().splitlines()[-1])

    params = sum(p.numel() for p in ours.parameters())
    print(
        f"MViTv2-S block settings, {args.frames}x{args.crop}^2, batch {args.batch}, {args.threads} threads, "
        f"device {args.device}, amp {args.amp}, ours attention={args.attention}; {params / 1e6:.2f} M params; "
        f"eval logits max |ours - torchvision| = {diff:.2e}"
    )
    print(f"{'model':<12} {'train step (s)':>15} {'CPU time (s)':>13} {'peak mem (MiB)':>15}")
    for name in ("torchvision", "ours"):
        m = f"{mem[name]:.0f}" if mem[name] is not None else "-"
        print(f"{name:<12} {med[name]:>15.3f} {cpu[name]:>13.3f} {m:>15}")
    speedup = med["torchvision"] / med["ours"]
    line = f"speed-up (torchvision time / ours): {speedup:.2f}x wall, {cpu['torchvision'] / cpu['ours']:.2f}x CPU time"
    if mem["ours"] and mem["torchvision"]:
        line += f"; memory ratio (ours / torchvision): {mem['ours'] / mem['torchvision']:.2f}"
    print(line)
    summary = {"time_s": med, "cpu_time_s": cpu, "peak_mib": mem, "speedup": round(speedup, 3), "max_abs_diff": diff}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
