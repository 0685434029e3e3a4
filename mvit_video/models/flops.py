"""Parameter and FLOP counting as PySlowFast reports them (fvcore, one multiply-add = one flop, batch 1)."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Iterator, Sequence

import torch
from torch import nn

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
    from mvit_video.models.mvit import MultiScaleAttention

    changed = [m for m in model.modules() if isinstance(m, MultiScaleAttention) and m.fused]
    for m in changed:
        m.fused = False
    try:
        yield
    finally:
        for m in changed:
            m.fused = True


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


# Operators fvcore leaves out on purpose (elementwise, indexing, softmax, pooling): PySlowFast's figures exclude
# them too, so they are expected in unsupported_ops().
_ZERO_COST_OPS = {
    "aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::sub", "aten::div", "aten::rsub", "aten::softmax",
    "aten::gelu", "aten::max_pool3d", "aten::avg_pool3d", "aten::mean", "aten::expand_as", "aten::pad",
    "aten::constant_pad_nd", "aten::one_hot", "aten::repeat", "aten::index", "aten::floor", "aten::cat",
    "aten::new_zeros", "aten::arange", "aten::clone", "aten::fill_", "aten::zeros", "aten::zeros_like",
    "aten::pow", "aten::neg",  # the attention scale head_dim**-0.5, traced as scalar ops
}
