"""Parameter and FLOP counting as PySlowFast reports them (fvcore, one multiply-add = one flop, batch 1)."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from mvit_video.models.mvit import MultiScaleAttention

logger = logging.getLogger(__name__)


def count_params(model: nn.Module) -> int:
    """Number of parameters (all of them, as PySlowFast's params_count)."""
    return sum(p.numel() for p in model.parameters())


def _import_fvcore_nn():
    """fvcore.nn, without the FutureWarning that importing it prints on current torch (its focal-loss module calls
    torch.jit.script at import time): it says nothing about the user's run."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        import fvcore.nn
        import fvcore.nn.jit_handles
    return fvcore.nn


def _shape(value: Any) -> list[int]:
    return _import_fvcore_nn().jit_handles.get_shape(value)


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for aten::scaled_dot_product_attention: q@k^T plus attn@v, as the plain formulation."""
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


@contextlib.contextmanager
def plain_attention(model: nn.Module) -> Iterator[None]:
    """Temporarily run every MultiScaleAttention of `model` on the plain (reference) path.

    The fused path computes the same function with q/k widened by the one-hot rel-pos columns (and padding);
    counting the plain formulation gives the figures PySlowFast and the paper report.
    """
    changed = [(m, m.fused, m.flex) for m in model.modules()
               if isinstance(m, MultiScaleAttention) and (m.fused or m.flex)]
    for m, _, _ in changed:
        m.fused = m.flex = False
    try:
        yield
    finally:
        for m, fused, flex in changed:
            m.fused, m.flex = fused, flex


def count_gflops(model: nn.Module, input_shape: Sequence[int]) -> float:
    """GFLOPs of one forward pass for an input of shape [B, 3, T, H, W] (or [3, T, H, W], batch 1 then).

    Uses fvcore's FlopCountAnalysis with its default operator handles plus one for
    scaled_dot_product_attention; any operator fvcore would skip that is not a known zero-cost op is logged.
    """
    FlopCountAnalysis = _import_fvcore_nn().FlopCountAnalysis

    shape = tuple(input_shape)
    if len(shape) == 4:
        shape = (1,) + shape
    param = next(model.parameters())
    x = torch.zeros(shape, dtype=param.dtype, device=param.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), plain_attention(model):
            analysis = FlopCountAnalysis(model, x)
            analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = analysis.total()
            skipped = {op: n for op, n in analysis.unsupported_ops().items() if op not in _ZERO_COST_OPS}
    finally:
        model.train(was_training)
    if skipped:
        logger.warning("fvcore did not count these operators: %s", skipped)
    return total / 1e9


def count_gflops_meta(model: nn.Module, input_shape: Sequence[int]) -> float:
    """count_gflops without computing anything: `model` lives on the meta device (built under
    `torch.device("meta")`, no weights allocated or initialised) and the forward only propagates shapes, so MViTv2-L
    at 40x312^2 takes seconds instead of a multi-TFLOP CPU forward (minutes on a small machine).

    The same numbers as count_gflops (tested equal): each operator fvcore's tracer records for this network is
    counted at the same level (the call the model makes: linear, matmul, einsum, conv, layer_norm, SDPA) with
    fvcore's own formula, read from a TorchFunctionMode, which sees every torch call once, not its internals.
    """
    from torch.overrides import TorchFunctionMode

    shape = tuple(input_shape)
    if len(shape) == 4:
        shape = (1,) + shape
    param = next(model.parameters())
    if param.device.type != "meta":
        raise ValueError("count_gflops_meta needs a model on the meta device (build it under torch.device('meta'))")
    counts: dict[str, float] = {}

    class _Counter(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 -- torch's protocol
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            flops = _meta_flops(name, args, kwargs, out)
            if flops:
                counts[name] = counts.get(name, 0.0) + flops
            return out

    x = torch.zeros(shape, dtype=param.dtype, device="meta")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), plain_attention(model), _Counter():
            model(x)
    finally:
        model.train(was_training)
    return sum(counts.values()) / 1e9


def _meta_flops(name: str, args: Sequence[Any], kwargs: dict, out: Any) -> float:
    """fvcore's count (fvcore.nn.jit_handles, 1 multiply-add = 1 flop) for one torch call, 0 for uncounted ones."""
    if name == "linear":  # linear_flop_jit
        return math.prod(args[0].shape) * args[1].shape[0]
    if name in ("matmul", "__matmul__", "mm", "bmm"):  # matmul_flop_jit / bmm_flop_jit
        return math.prod(args[0].shape) * args[1].shape[-1]
    if name == "addmm":  # addmm_flop_jit
        return args[1].shape[0] * args[1].shape[1] * args[2].shape[1]
    if name in ("conv1d", "conv2d", "conv3d"):  # conv_flop_jit (not transposed)
        return args[0].shape[0] * math.prod(args[1].shape) * math.prod(out.shape[2:])
    if name == "layer_norm":  # norm_flop_counter(2): 5 per element with an affine weight, else 4
        weight = args[2] if len(args) > 2 else kwargs.get("weight")
        return math.prod(args[0].shape) * (5 if weight is not None else 4)
    if name == "scaled_dot_product_attention":  # sdpa_flop_jit (ours, registered with fvcore too)
        q, k, v = (t.shape for t in args[:3])
        return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])
    if name == "einsum":
        return _einsum_flops(args[0], [list(t.shape) for t in (args[1:] if len(args) > 2 else args[1])])
    return 0.0


def _einsum_flops(equation: str, shapes: list[list[int]]) -> float:
    """fvcore's einsum_flop_jit: two contractions have closed forms, the rest numpy's optimal path count / 2."""
    import numpy as np

    equation = equation.replace(" ", "")
    letters = dict.fromkeys(c for c in equation if c.isalpha())
    equation = equation.translate({ord(c): 97 + i for i, c in enumerate(letters)})
    if equation == "abc,abd->acd":
        n, c, t = shapes[0]
        return n * c * t * shapes[-1][-1]
    if equation == "abc,adc->adb":
        n, t, g = shapes[0]
        return n * t * g * shapes[-1][1]
    report = np.einsum_path(equation, *[np.zeros(s) for s in shapes], optimize="optimal")[1]
    for line in report.split("\n"):
        if "optimized flop" in line.lower():
            return float(np.floor(float(line.split(":")[-1]) / 2))
    raise NotImplementedError(f"einsum {equation!r}: numpy reported no flop count")


# Operators fvcore leaves out on purpose (elementwise, indexing, softmax, pooling): PySlowFast's figures exclude
# them too, so they are expected in unsupported_ops().
_ZERO_COST_OPS = {
    "aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::sub", "aten::div", "aten::rsub", "aten::softmax",
    "aten::gelu", "aten::max_pool3d", "aten::avg_pool3d", "aten::mean", "aten::expand_as", "aten::pad",
    "aten::constant_pad_nd", "aten::one_hot", "aten::repeat", "aten::index", "aten::floor", "aten::cat",
    "aten::new_zeros", "aten::arange", "aten::clone", "aten::fill_", "aten::zeros", "aten::zeros_like",
    "aten::pow", "aten::neg",  # the attention scale head_dim**-0.5, traced as scalar ops
}
