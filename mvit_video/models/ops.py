"""The network's two custom autograd functions: the same math as plain PyTorch, kept only for measured gains.

- `DepthwiseConv3dFn`: the q/k/v pooling conv with a CPU backward ~10x faster than aten's (CPU only).
- `GeluLinearFn`: fc2(gelu(h)) that saves h instead of the GELU output (~13% less activation memory).

Each is checked against the plain composition in fp64 and under bf16 autocast (tests/models/test_ops.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Size3 = tuple[int, int, int]


class DepthwiseConv3dFn(torch.autograd.Function):
    """Depthwise Conv3d (groups = channels) with a faster CPU backward than aten's.

    Forward is F.conv3d (oneDNN, fast on channels-last input). aten's depthwise-3-D backward on CPU runs ~10-20x
    slower than the forward (a quarter of a train step); here the input gradient is a forward conv of the
    (stride-dilated) output gradient with the flipped kernel. The fp32 weight gradient is aten's (fast); in
    bf16/fp16 it is one multiply-reduce per kernel tap, blocked per output frame so the operands stay in cache.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride: Size3, padding: Size3) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv3d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        grad = grad.contiguous(memory_format=torch.channels_last_3d)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _depthwise_input_grad(grad, weight, x.shape, stride, padding)
        if ctx.needs_input_grad[1]:
            if grad.dtype == torch.float32:
                # oneDNN's fp32 weight gradient on channels-last is fast (5-10x the multiply-reduce below); only
                # its input gradient is the slow part
                grad_w = torch.ops.aten.convolution_backward(
                    grad, x, weight, None, list(stride), list(padding), [1, 1, 1], False, [0, 0, 0], x.shape[1],
                    [False, True, False],
                )[1]
            else:  # bf16/fp16: oneDNN's half-precision weight gradient is 2-20x slower than the multiply-reduce
                grad_w = _depthwise_weight_grad(grad, x, weight.shape, stride, padding)
            if grad_w.stride() != weight.stride():
                # oneDNN returns the weight gradient channels-last ((C,1,...) strides (27, 1, 9, 3, 1) against the
                # parameter's (27, 27, 9, 3, 1)): DDP's gradient buckets are laid out like the parameters and warn
                # "Grad strides do not match bucket view strides" (and copy) for every such grad. A tiny copy here.
                grad_w = torch.empty_strided(weight.shape, weight.stride(), dtype=grad_w.dtype,
                                             device=grad_w.device).copy_(grad_w)
        return grad_x, grad_w, None, None


def _depthwise_input_grad(grad: Tensor, weight: Tensor, x_shape: torch.Size, stride: Size3, padding: Size3) -> Tensor:
    """d(conv)/dx: scatter-free, as a stride-1 conv of the zero-dilated gradient with the flipped kernel."""
    C = weight.shape[0]
    kernel = weight.shape[2:]
    if any(s > 1 for s in stride):
        size = [(grad.shape[2 + i] - 1) * stride[i] + 1 for i in range(3)]
        B = grad.shape[0]
        dilated = grad.new_zeros(B, *size, C).permute(0, 4, 1, 2, 3)  # channels-last
        dilated[:, :, :: stride[0], :: stride[1], :: stride[2]] = grad
        grad = dilated
    full = F.conv3d(grad, weight.flip(2, 3, 4).to(grad.dtype), None, 1, [k - 1 for k in kernel], 1, C)
    # full[i] is the gradient of padded-input position i; input position j sits at i = j + padding. Positions
    # past the last window (strided convs) get no gradient.
    index, pad = [], []
    for i in range(3):
        n, start = x_shape[2 + i], padding[i]
        take = min(n, full.shape[2 + i] - start)
        index.append(slice(start, start + take))
        pad = [0, n - take] + pad
    grad_x = full[:, :, index[0], index[1], index[2]]
    return F.pad(grad_x, pad) if any(pad) else grad_x


def _depthwise_weight_grad(grad: Tensor, x: Tensor, w_shape: torch.Size, stride: Size3, padding: Size3) -> Tensor:
    """d(conv)/dweight: per kernel row (t, h), sum over positions of grad * (strided windows of padded x)."""
    kt, kh, kw = w_shape[2:]
    st, sh, sw = stride
    pt, ph, pw = padding
    xp = F.pad(x, (pw, pw, ph, ph, pt, pt)).permute(0, 2, 3, 4, 1)  # (B, Tp, Hp, Wp, C)
    g = grad.permute(0, 2, 3, 4, 1)  # (B, T', H', W', C)
    B, T, H, W, C = g.shape
    acc = torch.float32 if grad.dtype in (torch.float16, torch.bfloat16) else grad.dtype  # sum half types in fp32
    out = torch.zeros(C, kt * kh * kw, dtype=acc, device=grad.device)
    # Output frames in chunks of ~256K values: a chunk's gradient stays in cache across the kernel taps.
    step = max(1, (1 << 18) // max(1, B * H * W * C))
    for t0 in range(0, T, step):
        t1 = min(T, t0 + step)
        g_c = g[:, t0:t1].to(acc)  # (B, tc, H', W', C)
        taps = []
        for a in range(kt):
            x_a = xp[:, a + st * t0 : a + st * (t1 - 1) + 1 : st]
            for b in range(kh):
                for c in range(kw):
                    window = x_a[:, :, b : b + sh * (H - 1) + 1 : sh, c : c + sw * (W - 1) + 1 : sw]
                    taps.append((g_c * window).reshape(-1, C).sum(0))
        out += torch.stack(taps, dim=1)
    return out.reshape(w_shape).to(grad.dtype)


class GeluLinearFn(torch.autograd.Function):
    """linear(gelu(h)) that saves only h: the GELU output (4x the width, the largest activation of a block) is
    recomputed in backward instead of being kept alive between forward and backward (~13% less activation memory).

    `approximate` is nn.GELU's ("none" or "tanh"). Pointless inside activation checkpointing, which already
    recomputes the whole block: the MLP then takes the plain path (mvit.Mlp).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, h: Tensor, weight: Tensor, bias: Tensor, approximate: str = "none"
    ) -> Tensor:
        ctx.save_for_backward(h, weight, bias)
        ctx.approximate = approximate
        return F.linear(F.gelu(h, approximate=approximate), weight, bias)  # under autocast F.linear casts as outside

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        h, weight, bias = ctx.saved_tensors
        a = F.gelu(h, approximate=ctx.approximate).to(grad.dtype)
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_w = (g2.t() @ a.reshape(-1, a.shape[-1])).to(weight.dtype)
        grad_b = g2.sum(0).to(bias.dtype)
        grad_a = (grad @ weight.to(grad.dtype)).to(h.dtype)
        return torch.ops.aten.gelu_backward(grad_a, h, approximate=ctx.approximate), grad_w, grad_b, None
