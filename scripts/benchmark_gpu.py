#!/usr/bin/env python
"""The GPU check: train-step speed, peak memory and MFU of our MViTv2 against torchvision's, eager and compiled.

Needs only torch + torchvision + this package (fvcore for the MFU's FLOP count; without it MFU is left out).
Rows, all in bf16 autocast, one train step = forward + backward + fused AdamW step, median of --steps steps:
- S 16x224^2 batch 16: torchvision's MViT (mvit_v2_s settings) and ours with identical weights, each eager and
  torch.compile'd; speed-ups against torchvision eager and compiled, peak memory ratio;
- the B 32x3 (batch 8) and L 40x3@312 (activation checkpointing, batch 4) presets: ours eager and compiled,
  train clips/s, peak memory, MFU (fvcore forward GFLOPs, as `python -m mvit_video.stats` prints them, x 2 flops per
  multiply-add x 3 for forward + backward, x 4 with activation checkpointing; peak: the GPU's dense bf16 figure);
- inference clips/s (eval, no grad) of the B preset, eager and compiled;
- S with model.attention=flex (FlexAttention, rel-pos as a score_mod) beside ours (fused, the default), eager and
  compiled, measured last so it never displaces the rows above (--no-flex leaves it out; on the CPU it is skipped:
  torch has no FlexAttention backward there);
- a short CUDA-kernel profile of ours (S, eager) to explain what the step spends its time on.
Ours is compiled as training compiles it (--compile-mode, default regional: each block, engine/compile.py);
torchvision's as one graph. A section whose compile would overrun --budget-s is skipped and says so. Prints one
table and one JSON line.

    python scripts/benchmark_gpu.py                 # on a GPU; about 5-6 minutes, compiles included
    python scripts/benchmark_gpu.py --quick         # issue 21's rows in <= 5 min: S eager + compiled, B and L
                                                    #   compiled (train, B inference), compile times, S flex as far
                                                    #   as the budget goes; no profile
    python scripts/benchmark_gpu.py --quick --sections s,flex   # S fused vs flex side by side (and torchvision)
    python scripts/benchmark_gpu.py --smoke --device cpu   # tiny sizes: checks the script itself in seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from mvit_video.config import build_config, compose
from mvit_video.engine import throughput
from mvit_video.engine.compile import compile_model, count_block_shapes
from mvit_video.models import MViT, MViTConfig
from mvit_video.models.config import block_configs
from mvit_video.models.convert import from_torchvision, torchvision_config, torchvision_mvit
from mvit_video.utils.errors import ConfigError

RESULTS: list[dict[str, Any]] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def record(row: dict[str, Any], out: str | None) -> None:
    RESULTS.append(row)
    log("  " + json.dumps(row))
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_step(model: torch.nn.Module, forward: Callable, x: torch.Tensor, y: torch.Tensor,
              amp: torch.dtype | None) -> Callable[[], None]:
    """One train step: forward, loss, backward, AdamW (fused on CUDA)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=x.is_cuda)

    def step() -> None:
        with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(forward(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def time_step(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> tuple[float, float, float]:
    """(seconds of the first call, median step seconds, peak memory GiB over the timed steps)."""
    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return first, statistics.median(times), peak


def forward_gflops(config: MViTConfig, device: torch.device) -> float | None:
    """fvcore forward GFLOPs of one clip (what `python -m mvit_video.stats` prints); None without fvcore."""
    try:
        from mvit_video.models.flops import count_gflops

        shape = (1, 3, config.num_frames, config.crop_size, config.crop_size)
        return count_gflops(MViT(config).to(device), shape)
    except ImportError as e:
        log(f"no MFU: {e}")
        return None


def compile_ours(args: argparse.Namespace, model: torch.nn.Module) -> Callable:
    """Ours compiled as training compiles it (train.compile_mode)."""
    return compile_model(model, args.compile_mode, backend=args.compile_backend)


def compile_units(args: argparse.Namespace, config: MViTConfig) -> int:
    """What compile time scales with: distinct block shapes (regional) or blocks (one graph of the whole net)."""
    return count_block_shapes(block_configs(config)) if args.compile_mode != "full" else config.depth


def fresh(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def compare_with_torchvision(args: argparse.Namespace, device: torch.device, amp: torch.dtype | None,
                             deadline: float, compiled: bool, names: tuple[str, ...] | None = None) -> None:
    """The S rows: torchvision and ours (fused attention), or `names` of them; "ours_flex" is ours with
    model.attention=flex, the same weights."""
    frames, crop, batch = (4, 32, 2) if args.smoke else (16, 224, args.s_batch)
    torch.manual_seed(0)
    config = dataclasses.replace(torchvision_config(frames, crop), droppath_rate=0.0, dropout_rate=0.0)
    x = torch.randn(batch, 3, frames, crop, crop, device=device)
    y = torch.randint(0, 400, (batch,), device=device)
    if names is None:
        names = ("ours", "torchvision") if compiled and args.quick else ("torchvision", "ours")
    row = f"S {frames}x{crop}^2 b{batch}"
    for name in names:
        units = config.depth if name == "torchvision" else compile_units(args, config)
        # flex compiles its attention kernels even in eager (torch's eager FlexAttention is an unfused reference)
        needed = args.compile_s_per_unit * units if compiled else args.flex_eager_s if name == "ours_flex" else 0.0
        if time.perf_counter() + needed > deadline:
            record({"row": row, "model": name, "compiled": compiled, "skipped": "time budget"}, args.out)
            continue
        fresh(device)
        torch.manual_seed(0)
        tv = torchvision_mvit(config)
        model: torch.nn.Module = tv
        if name != "torchvision":
            model = MViT(dataclasses.replace(config, attention="flex") if name == "ours_flex" else config)
            model.load_state_dict(from_torchvision(tv.state_dict()))
        del tv
        model = model.to(device).train()
        if not compiled:
            forward = model
        elif name != "torchvision":
            forward = compile_ours(args, model)
        else:
            forward = torch.compile(model, backend=args.compile_backend)
        try:
            first, med, peak = time_step(make_step(model, forward, x, y, amp), device, args.warmup, args.steps)
        except ConfigError as e:  # model.attention=flex on the CPU: no FlexAttention backward there
            record({"row": row, "model": name, "compiled": compiled, "skipped": str(e)}, args.out)
            continue
        record({"row": row, "model": name, "compiled": compiled,
                "compile_mode": (args.compile_mode if name != "torchvision" else "full") if compiled else None,
                "step_s": round(med, 4), "clips_per_s": round(batch / med, 2), "peak_gib": round(peak, 2),
                "first_step_s": round(first, 1)}, args.out)
        if compiled and name == "ours":  # what compiling really took here decides whether B and L fit the budget
            args.compile_s_per_unit = first / units
        del model, forward


def flex_rows(args: argparse.Namespace, device: torch.device, amp: torch.dtype | None, deadline: float,
              compiled: bool) -> None:
    """S with model.attention=flex, as far as the budget goes (the table prints it beside ours)."""
    compare_with_torchvision(args, device, amp, deadline, compiled, names=("ours_flex",))


def preset_rows(args: argparse.Namespace, device: torch.device, amp: torch.dtype | None, deadline: float,
                compiled: bool) -> None:
    peak_flops = throughput.peak_flops(device, args.peak_tflops)
    presets = [("B 32x3", "k400_b_32x3", args.b_batch, False), ("L 40x3@312", "k400_l_40x3_312", args.l_batch, True)]
    for label, experiment, batch, ckpt in presets:
        overrides = [f"+experiment={experiment}", "mvit.droppath_rate=0.0", f"model.act_checkpoint={str(ckpt).lower()}"]
        if args.smoke:  # a 3-block model of the preset's family on a small input: checks the script, not speed
            overrides += ["data.num_frames=4", "data.train_crop_size=32", "mvit.depths=[1,2]", "mvit.embed_dim=16"]
            batch = 2
        config = build_config(compose(overrides)).model
        if not compiled and args.quick:
            continue  # --quick: B and L compiled only
        units = compile_units(args, config)
        if compiled and time.perf_counter() + args.compile_s_per_unit * units > deadline:
            record({"row": label, "model": "ours", "compiled": True, "skipped": "time budget"}, args.out)
            continue
        gflops = forward_gflops(config, device)
        flops_per_clip = throughput.train_flops_per_clip(gflops, ckpt) if gflops else None
        shape = (batch, 3, config.num_frames, config.crop_size, config.crop_size)
        fresh(device)
        torch.manual_seed(0)
        model = MViT(config).to(device).train()
        forward = compile_ours(args, model) if compiled else model
        x = torch.randn(shape, device=device)
        y = torch.randint(0, config.num_classes, (batch,), device=device)
        first, med, peak = time_step(make_step(model, forward, x, y, amp), device, args.warmup, args.steps)
        clips = batch / med
        mfu = throughput.mfu(clips, flops_per_clip, peak_flops)
        record({"row": label, "model": "ours", "compiled": compiled, "batch": batch,
                "compile_mode": args.compile_mode if compiled else None,
                "act_checkpoint": ckpt, "step_s": round(med, 4), "clips_per_s": round(clips, 2),
                "peak_gib": round(peak, 2), "gflops_fwd": gflops and round(gflops, 1),
                "mfu": mfu and round(mfu, 4), "first_step_s": round(first, 1)}, args.out)
        if experiment == "k400_b_32x3" and not (compiled and time.perf_counter() + 60 > deadline):
            inference(args, model, forward, shape, device, amp, label, compiled)
        elif experiment == "k400_b_32x3":
            record({"row": f"{label} inference", "model": "ours", "compiled": True, "skipped": "time budget"},
                   args.out)
        del model, forward


@torch.no_grad()
def inference(args: argparse.Namespace, model: torch.nn.Module, forward: Callable, shape: tuple[int, ...],
              device: torch.device, amp: torch.dtype | None, label: str, compiled: bool) -> None:
    model.eval()
    batch = shape[0] * 2
    x = torch.randn((batch, *shape[1:]), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            forward(x)

    first, med, peak = time_step(step, device, args.warmup, args.steps)
    record({"row": f"{label} inference", "model": "ours", "compiled": compiled, "batch": batch,
            "clips_per_s": round(batch / med, 2), "peak_gib": round(peak, 2), "first_step_s": round(first, 1)},
           args.out)
    model.train()


def profile_ours(args: argparse.Namespace, device: torch.device, amp: torch.dtype | None) -> None:
    """Top CUDA kernels of two eager train steps of ours at S (what a shortfall is explained from)."""
    from torch.profiler import ProfilerActivity, profile

    frames, crop, batch = (4, 32, 2) if args.smoke else (16, 224, args.s_batch)
    fresh(device)
    config = dataclasses.replace(torchvision_config(frames, crop), droppath_rate=0.0)
    model = MViT(config).to(device).train()
    x = torch.randn(batch, 3, frames, crop, crop, device=device)
    y = torch.randint(0, 400, (batch,), device=device)
    step = make_step(model, model, x, y, amp)
    step()
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(2):
            step()
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nProfile of ours, eager, S {frames}x{crop}^2 b{batch}, 2 train steps (top kernels by {key}):")
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=70))


def _side_by_side(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows in measured order, except that each ours_flex row is printed right after ours' row of its kind."""
    flex = [r for r in rows if r.get("model") == "ours_flex"]
    out = [r for r in rows if r.get("model") != "ours_flex"]
    for r in flex:
        anchor = [i for i, o in enumerate(out) if o.get("model") == "ours" and o["row"] == r["row"]
                  and bool(o.get("compiled")) == bool(r.get("compiled"))]
        out.insert(anchor[0] + 1 if anchor else len(out), r)
    return out


def print_table() -> None:
    print(f"\n{'row':<24} {'model':<12} {'compiled':<9} {'step s':>8} {'clips/s':>9} {'peak GiB':>9} "
          f"{'MFU':>7} {'first s':>8}   (first s: the first step, compile included)")
    for r in _side_by_side(RESULTS):
        if "skipped" in r:
            print(f"{r['row']:<24} {r.get('model', 'ours'):<12} {'yes' if r.get('compiled') else 'no':<9} "
                  f"skipped: {r['skipped']}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"
        step = f"{r['step_s']:.4f}" if "step_s" in r else "-"
        print(f"{r['row']:<24} {r['model']:<12} {'yes' if r['compiled'] else 'no':<9} {step:>8} "
              f"{r['clips_per_s']:>9.2f} {r['peak_gib']:>9.2f} {mfu:>7} {r['first_step_s']:>8.1f}")
    s_rows = {(r["model"], r["compiled"]): r for r in RESULTS if r["row"].startswith("S ") and "step_s" in r}
    ratios: dict[str, float] = {}
    tv_eager = s_rows.get(("torchvision", False))
    if tv_eager:
        for (model, compiled), r in s_rows.items():
            if (model, compiled) == ("torchvision", False):
                continue
            ratios[f"{model}{'_compiled' if compiled else ''}_vs_tv_eager"] = round(tv_eager["step_s"] / r["step_s"],
                                                                                    3)
        if ("ours", False) in s_rows:
            ratios["ours_eager_peak_mem_vs_tv_eager"] = round(s_rows[("ours", False)]["peak_gib"]
                                                              / tv_eager["peak_gib"], 3)
    if ("torchvision", True) in s_rows and ("ours", True) in s_rows:
        ratios["ours_compiled_vs_tv_compiled"] = round(
            s_rows[("torchvision", True)]["step_s"] / s_rows[("ours", True)]["step_s"], 3)
    for compiled in (False, True):  # > 1: flex is faster than fused
        if ("ours", compiled) in s_rows and ("ours_flex", compiled) in s_rows:
            ratios[f"flex_vs_fused{'_compiled' if compiled else '_eager'}"] = round(
                s_rows[("ours", compiled)]["step_s"] / s_rows[("ours_flex", compiled)]["step_s"], 3)
    print("\nS ratios (step time of the baseline / ours; memory ours / torchvision):",
          ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    print(json.dumps({"device": RESULTS[0].get("device") if RESULTS else None, "ratios": ratios, "rows": RESULTS}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--amp", choices=["bf16", "fp16", "none"], default="bf16")
    parser.add_argument("--s-batch", type=int, default=16)
    parser.add_argument("--b-batch", type=int, default=8)
    parser.add_argument("--l-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=None,
                        help="skip compiled rows that would overrun this (default 330 s; 300 with --quick)")
    parser.add_argument("--compile-s-per-unit", "--compile-s-per-block", type=float, default=9.0,
                        help="assumed compile seconds per distinct block shape (regional) or per block (full), "
                             "until the S row measured it")
    parser.add_argument("--compile-mode", choices=["regional", "full", "nested"], default="regional",
                        help="how ours is compiled (train.compile_mode)")
    parser.add_argument("--quick", action="store_true",
                        help="issue 21's rows within --budget-s (default 300): S eager and compiled, B and L "
                             "compiled, compile times; skips the B/L eager rows and the profile")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU dense bf16 peak (default: datasheet)")
    parser.add_argument("--sections", default="s,presets,profile,flex",
                        help="s (S vs torchvision), presets (B, L), profile, flex (S with model.attention=flex)")
    parser.add_argument("--no-flex", action="store_true", help="leave out the model.attention=flex rows")
    parser.add_argument("--flex-eager-s", type=float, default=60.0,
                        help="assumed seconds for the eager flex row (its first step compiles the attention kernels)")
    parser.add_argument("--out", help="also append each row as a JSON line to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (checks the script on any device)")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (aot_eager: quick check)")
    args = parser.parse_args()
    if args.budget_s is None:
        args.budget_s = 300.0 if args.quick else 330.0
    if args.smoke:
        args.steps, args.warmup, args.flex_eager_s = 2, 1, 5.0
    elif args.quick:
        args.steps, args.warmup = min(args.steps, 6), min(args.warmup, 2)
    device = torch.device(args.device)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[args.amp]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"device {name}, torch {torch.__version__}, amp {args.amp}, budget {args.budget_s:.0f} s")
    record({"row": "info", "device": name, "torch": torch.__version__}, args.out)
    RESULTS.pop()  # the info row is for the JSON-lines file only
    start = time.perf_counter()
    deadline = start + args.budget_s
    sections = set(args.sections.split(","))
    if args.no_flex:
        sections.discard("flex")
    if args.quick:
        sections.discard("profile")
        log("--quick: skipping the B and L eager rows, B eager inference and the kernel profile (run without "
            "--quick for them); compiled rows that would overrun the budget are skipped and listed")
    # Eager rows and the profile first (quick), then the compiled rows as far as the budget goes. A failing section
    # is reported and the others still run.
    plan = [("s", compare_with_torchvision, False), ("presets", preset_rows, False), ("profile", None, False),
            ("s", compare_with_torchvision, True), ("presets", preset_rows, True),
            ("flex", flex_rows, False), ("flex", flex_rows, True)]
    for section, run, compiled in plan:
        if section not in sections:
            continue
        try:
            if run is None:
                profile_ours(args, device, amp)
            else:
                run(args, device, amp, deadline, compiled)
        except Exception as e:  # noqa: BLE001 - a benchmark section failing must not hide the other rows
            log(f"section {section} (compiled={compiled}) failed: {type(e).__name__}: {e}")
            record({"row": section, "model": "-", "compiled": compiled, "skipped": f"error {type(e).__name__}: {e}"},
                   args.out)
    for r in RESULTS:
        r.setdefault("device", name)
    print(f"\n{name}, torch {torch.__version__}, amp {args.amp}; total {time.perf_counter() - start:.0f} s")
    print_table()
    skipped = [f"{r['row']} {r.get('model', '')}{' compiled' if r.get('compiled') else ''}: {r['skipped']}"
               for r in RESULTS if "skipped" in r]
    if args.quick:
        skipped += ["B 32x3 eager, L 40x3@312 eager, B inference eager, kernel profile: --quick"]
    if "flex" not in sections:
        skipped += ["S model.attention=flex: --no-flex or not in --sections"]
    print("skipped:", "; ".join(skipped) if skipped else "nothing")


if __name__ == "__main__":
    main()
