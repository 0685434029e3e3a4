"""Export a trained network for a fixed clip shape, and check it against the eager model.

    mvit-export --checkpoint ckpt.pyth --format export mvit.pt2        # torch.export
    mvit-export --checkpoint ckpt.pyth --format torchscript mvit.pt    # torch.jit.trace
    mvit-export --checkpoint ckpt.pyth --format onnx mvit.onnx         # needs the [export] extra

Input [batch, 3, num_frames, crop, crop] (normalised views, as `Predictor.views` makes them; default the checkpoint's
num_frames and test crop), output logits [batch, num_classes]. The exported file is loaded back and run on two random
clips: the max |logit difference| to the eager model is printed and must be <= --tolerance (1e-4), else exit 1.
With --attention auto the fused attention (SDPA) is exported when it exports faithfully, else the plain path
(model.attention=plain, the same function). OUT.json records the input shape, class names and data_config.
--bench N times the exported model against eager on the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mvit_video.utils.errors import UserError, cli_errors
from mvit_video.utils.helptext import from_docstring

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch and the model are imported in the functions that use them: `--help` and a wrong option answer at once.
Runner = Callable[["torch.Tensor"], "torch.Tensor"]
FORMATS = ("torchscript", "onnx", "export")
NEEDS_ONNX = 'onnx export needs onnx, onnxscript and onnxruntime: pip install -e ".[export]"'


def set_attention(model: nn.Module, kind: str) -> None:
    """Switch every attention block between the fused (SDPA) and the plain formulation (the same function)."""
    from mvit_video.models.mvit import MultiScaleAttention

    for m in model.modules():
        if isinstance(m, MultiScaleAttention):
            m.fused, m.flex = kind == "fused", kind == "flex"
    if hasattr(model, "config"):
        model.config.attention = kind


def export_torchscript(model: nn.Module, example: torch.Tensor, out: Path) -> Runner:
    """torch.jit.trace (the shapes are fixed, so tracing is exact), saved and loaded back."""
    import torch

    with warnings.catch_warnings():
        # TracerWarning: shape arithmetic becomes constants, which is right for a fixed clip shape (and the check
        # against eager below would catch it otherwise); FutureWarning: TorchScript is deprecated, still works.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(out))
        loaded = torch.jit.load(str(out), map_location="cpu").eval()
    return lambda x: loaded(x)


def export_program(model: nn.Module, example: torch.Tensor, out: Path) -> Runner:
    """torch.export.export with static shapes, saved (.pt2) and loaded back."""
    import torch

    with torch.no_grad():
        program = torch.export.export(model, (example,))
    torch.export.save(program, str(out))
    loaded = torch.export.load(str(out)).module()
    return lambda x: loaded(x)


def export_onnx(model: nn.Module, example: torch.Tensor, out: Path, opset: int = 18) -> Runner:
    """torch.onnx.export (the torch.export-based exporter), run back with onnxruntime on the CPU."""
    import torch

    try:
        import onnx  # noqa: F401 -- the exporter needs it
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError(NEEDS_ONNX) from None
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(out), input_names=["clips"], output_names=["logits"],
                          opset_version=opset, dynamo=True, verbose=False, external_data=False)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = torch.get_num_threads()  # the same cores as eager torch
    # no busy-waiting between runs: spinning threads would steal the CPU from whatever runs next (eager, in --bench)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"clips": x.numpy()})[0])


EXPORTERS: dict[str, Callable[..., Runner]] = {
    "torchscript": export_torchscript, "export": export_program, "onnx": export_onnx,
}


def max_logit_diff(model: nn.Module, runner: Runner, inputs: Sequence[torch.Tensor]) -> float:
    """Largest |exported - eager| logit over `inputs`."""
    import torch

    with torch.no_grad():
        return max(float((runner(x).float() - model(x).float()).abs().max()) for x in inputs)


def export_checked(model: nn.Module, fmt: str, out: Path, example: torch.Tensor, inputs: Sequence[torch.Tensor],
                   tolerance: float, attention: str = "auto", exporters: dict[str, Callable[..., Runner]] = EXPORTERS,
                   log: Callable[[str], None] = print) -> tuple[Runner, str, float]:
    """Export with the fused attention, falling back to the plain one when that fails or is off by > tolerance
    (attention="auto"); returns (runner of the saved file, the attention exported, max |Δlogit|)."""
    tries = ["fused", "plain"] if attention == "auto" else [attention]
    for i, kind in enumerate(tries):
        set_attention(model, kind)
        last = i == len(tries) - 1
        try:
            runner = exporters[fmt](model, example, out)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 -- exporters fail in many ways; the message says which and why
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            if last:
                raise UserError(f"{fmt} export failed with the {kind} attention: {type(e).__name__}: {first}") from e
            log(f"{fmt}: the fused attention did not export ({type(e).__name__}: {first}); using the plain path")
            continue
        diff = max_logit_diff(model, runner, inputs)
        if diff <= tolerance or last:
            return runner, kind, diff
        log(f"{fmt}: the fused attention exported with max |Δlogit| {diff:.2e} > {tolerance:g}; using the plain path")
    raise AssertionError("unreachable")


def bench(eager: Runner, exported: Runner, x: torch.Tensor, runs: int, warmup: int = 3) -> tuple[float, float]:
    """Median seconds per call of (eager, exported) over `runs` calls each, after `warmup` untimed calls of each.
    Both sides warm up alike: a first call pays one-off costs (oneDNN primitive creation, allocator growth, ONNX
    Runtime's first-run setup) that once made eager look 10x slower than it is. The timed calls alternate, so a
    busy machine slows both alike and the ratio stays meaningful."""
    import torch

    times: tuple[list[float], list[float]] = ([], [])
    with torch.no_grad():
        for _ in range(max(1, warmup)):
            eager(x), exported(x)
        for _ in range(runs):
            for fn, acc in zip((eager, exported), times):
                start = time.perf_counter()
                fn(x)
                acc.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(**from_docstring("export_model", __doc__))
    p.add_argument("out", metavar="OUT", help="the exported file (.pt / .pt2 / .onnx)")
    p.add_argument("--checkpoint", required=True, help="an mvit_video checkpoint (ours, or converted)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--batch", type=int, default=1, help="clips per call in the exported model (default 1)")
    p.add_argument("--num-frames", type=int, default=None, help="default: the checkpoint's data_config")
    p.add_argument("--crop-size", type=int, default=None, help="default: the checkpoint's test crop")
    p.add_argument("--attention", choices=["auto", "fused", "plain"], default="auto",
                   help="auto: fused where it exports faithfully, else plain (default)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17; default 18)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |Δlogit| allowed (default 1e-4)")
    p.add_argument("--ema", action="store_true", help="export the checkpoint's EMA weights")
    p.add_argument("--bench", type=int, default=0, metavar="N", help="time N calls, exported vs eager, on the CPU")
    p.add_argument("--warmup", type=int, default=3, metavar="N",
                   help="untimed calls of each before --bench times them (default 3, at least 1)")
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error("--batch must be >= 1")
    if args.opset < 17:
        p.error("--opset must be >= 17")
    return args


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Export, verify (exit 1 when off by more than --tolerance), optionally time."""
    args = parse_args(argv)
    import torch

    from mvit_video.checkpoint import load_checkpoint_info, load_model
    from mvit_video.settings import CheckpointData

    info = load_checkpoint_info(args.checkpoint)
    data = CheckpointData.from_dict(info.get("data_config"), str(args.checkpoint))
    frames = args.num_frames or data.num_frames or info["model_config"]["num_frames"]
    crop = args.crop_size or data.test_crop_size or info["model_config"]["crop_size"]
    shape = (args.batch, 3, int(frames), int(crop), int(crop))
    model = load_model(args.checkpoint, use_ema=args.ema).eval()
    out = Path(args.out)
    if args.format == "export" and out.suffix != ".pt2":
        raise UserError(f"{out}: torch.export files must end in .pt2 (torch.export.load refuses other names)")
    out.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    example, other = (torch.randn(shape, generator=gen) for _ in range(2))  # the second one checks generality
    exporters = dict(EXPORTERS)
    exporters["onnx"] = lambda m, x, o: export_onnx(m, x, o, args.opset)
    runner, attention, diff = export_checked(model, args.format, out, example, [example, other], args.tolerance,
                                             args.attention, exporters)
    meta = {"format": args.format, "input_shape": list(shape), "input": "normalised clips [B,3,T,H,W]",
            "output": "logits [B,num_classes]", "attention": attention, "checkpoint": str(args.checkpoint),
            "class_names": info.get("class_names"), "data_config": data.to_dict(), "max_abs_logit_diff": diff}
    out.with_name(out.name + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    ok = diff <= args.tolerance
    print(f"wrote {out} ({args.format}, input {list(shape)}, {attention} attention)")
    print(f"max |Δlogit| vs eager: {diff:.2e} ({'ok' if ok else 'FAILED'}, tolerance {args.tolerance:g})")
    if args.bench > 0:
        set_attention(model, "fused")  # eager at its best
        eager, exported = bench(model, runner, example, args.bench, args.warmup)
        print(f"CPU, {torch.get_num_threads()} threads, median of {args.bench} after {max(1, args.warmup)} warm-up "
              f"calls each: eager {eager * 1e3:.1f} ms, "
              f"{args.format} {exported * 1e3:.1f} ms ({eager / exported:.2f}x eager speed)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
