"""The custom autograd functions (models/ops.py) against the plain PyTorch composition, in fp64 and under bf16
autocast; the MLP uses its fused function only for a GELU and never inside activation checkpointing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.models import MViT
from mvit_video.models.mvit import Mlp
from mvit_video.models.ops import DepthwiseConv3dFn, GeluLinearFn

_BF16 = dict(rtol=2e-2, atol=2e-2)  # bf16 keeps 8 bits of mantissa: ~0.4% per rounding, a few roundings deep


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], cot: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(out, inputs, cot.to(out.dtype))


def _close_relative(got: torch.Tensor, want: torch.Tensor, rel: float, name: str = "") -> None:
    """max |got - want| <= rel * max |want|: for bf16 sums whose small entries have no relative precision."""
    err = (got.double() - want.double()).abs().max().item()
    assert err <= rel * max(want.double().abs().max().item(), 1e-12), (name, err)


# ---------------------------------------------------------------- DepthwiseConv3dFn
_CONV_CASES = [
    ((2, 8, 4, 6, 6), (3, 3, 3), (1, 1, 1)),
    ((2, 8, 4, 6, 6), (3, 3, 3), (1, 2, 2)),
    ((1, 4, 5, 9, 7), (3, 3, 3), (2, 3, 2)),
    ((2, 4, 4, 8, 8), (3, 3, 3), (1, 8, 8)),
    ((1, 4, 3, 5, 5), (1, 3, 3), (1, 2, 2)),
]


def _conv_inputs(shape, kernel, stride):
    g = torch.Generator().manual_seed(0)
    C = shape[1]
    x = torch.randn(shape, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn(C, 1, *kernel, generator=g, dtype=torch.float64)
    padding = tuple(k // 2 for k in kernel)
    cot = torch.randn(F.conv3d(x, w, None, stride, padding, 1, C).shape, generator=g, dtype=torch.float64)
    return x, w, cot, padding


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,kernel,stride", _CONV_CASES)
def test_depthwise_conv_backward_equals_aten(shape, kernel, stride, dtype):
    """The pooling conv's own backward (input and weight gradients) equals aten's fp64 conv3d backward; fp32 takes
    aten's weight gradient, fp64 and bf16 the multiply-reduce."""
    x, w, cot, padding = _conv_inputs(shape, kernel, stride)
    C = shape[1]
    # the reference sees the inputs rounded to dtype, in fp64
    x = x.to(dtype)
    w = w.to(dtype)
    x1, w1 = x.double().clone().requires_grad_(), w.double().clone().requires_grad_()
    x2, w2 = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = F.conv3d(x1, w1, None, stride, padding, 1, C)
    out = DepthwiseConv3dFn.apply(x2, w2, stride, padding)
    tol = {torch.float64: {}, torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=1e-1)}
    torch.testing.assert_close(out.double(), ref, **tol[dtype])
    ref.backward(cot)
    out.backward(cot.to(dtype))
    assert x2.grad.dtype == w2.grad.dtype == dtype
    torch.testing.assert_close(x2.grad.double(), x1.grad, **tol[dtype])
    torch.testing.assert_close(w2.grad.double(), w1.grad, **tol[dtype])


@pytest.mark.parametrize("shape,kernel,stride", _CONV_CASES)
def test_depthwise_conv_under_autocast_matches_plain_conv(shape, kernel, stride):
    """As the model runs it in bf16 autocast (bf16 activations from qkv, weight cast to bf16): the same output and
    fp32 leaf gradients as plain F.conv3d under the same autocast, within bf16 precision."""
    x, w, cot, padding = _conv_inputs(shape, kernel, stride)
    C = shape[1]
    results = []
    for fused in (True, False):
        xl = x.float().clone().requires_grad_()
        wl = w.float().clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            xb = xl.to(torch.bfloat16)
            wb = wl.to(torch.bfloat16)
            out = DepthwiseConv3dFn.apply(xb, wb, stride, padding) if fused else F.conv3d(xb, wb, None, stride,
                                                                                         padding, 1, C)
        assert out.dtype == torch.bfloat16
        results.append((out, *_grads(out, [xl, wl], cot)))
    for name, got, want in zip(("out", "grad x", "grad w"), results[0], results[1]):
        assert got.dtype == want.dtype, name
        _close_relative(got, want, 2e-2, name)


# ---------------------------------------------------------------- GeluLinearFn
@pytest.fixture
def gelu_linear_calls(monkeypatch):
    """Calls of GeluLinearFn.forward (each fused MLP forward, a recomputation included)."""
    calls = [0]
    forward = GeluLinearFn.forward

    def counting(ctx, *args):
        calls[0] += 1
        return forward(ctx, *args)

    monkeypatch.setattr(GeluLinearFn, "forward", staticmethod(counting))
    return calls


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_linear_equals_plain_in_fp64(approximate):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 5, 32, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(12, 32, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(12, generator=g, dtype=torch.float64, requires_grad=True)
    cot = torch.randn(2, 5, 12, generator=g, dtype=torch.float64)
    out = GeluLinearFn.apply(h, w, b, approximate)
    ref = F.linear(F.gelu(h, approximate=approximate), w, b)
    torch.testing.assert_close(out, ref)
    for got, want in zip(_grads(out, [h, w, b], cot), _grads(ref, [h, w, b], cot)):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda h, w, b: GeluLinearFn.apply(h, w, b, approximate),
                                    (h[:1, :2].detach().requires_grad_(), w, b))


def test_mlp_recomputing_gelu_has_exact_gradients(gelu_linear_calls):
    """The MLP keeps only fc1's output for backward; its gradients equal the plain fc1 -> GELU -> fc2 graph."""
    mlp = Mlp(8, 32, 12).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    cot = torch.randn(2, 5, 12, dtype=torch.float64)
    out = mlp(x)
    assert gelu_linear_calls == [1]  # the fused path did run
    grads = torch.autograd.grad(out, [x, *mlp.parameters()], cot)
    ref = mlp.fc2(F.gelu(mlp.fc1(x)))
    ref_grads = torch.autograd.grad(ref, [x, *mlp.parameters()], cot)
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_mlp_under_autocast_matches_plain_mlp():
    """bf16 autocast: output and fp32 parameter/input gradients of the fused MLP equal the plain one's."""
    torch.manual_seed(0)
    fused = Mlp(16, 64, 24)
    plain = Mlp(16, 64, 24, recompute_act=False)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(3, 7, 16)
    cot = torch.randn(3, 7, 24)
    results = []
    for mlp in (fused, plain):
        xl = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = mlp(xl)
        assert out.dtype == torch.bfloat16
        results.append((out, *_grads(out, [xl, *mlp.parameters()], cot)))
    names = ["out", "x", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for name, got, want in zip(names, results[0], results[1]):
        assert got.dtype == want.dtype, name
        _close_relative(got, want, 2e-2, name)
    # and both within bf16 precision of the fp32 graph
    ref = plain(x)
    torch.testing.assert_close(results[0][0].float(), ref, **_BF16)


@pytest.mark.parametrize("act", [nn.SiLU(), nn.ReLU(), nn.Identity()])
def test_mlp_with_another_act_applies_it_and_not_the_fused_gelu(act, gelu_linear_calls):
    mlp = Mlp(8, 32, 12)
    mlp.act = act
    x = torch.randn(2, 5, 8, requires_grad=True)
    out = mlp(x)
    torch.testing.assert_close(out, mlp.fc2(act(mlp.fc1(x))))
    out.sum().backward()
    assert gelu_linear_calls == [0]


def test_mlp_with_tanh_gelu_applies_tanh(gelu_linear_calls):
    mlp = Mlp(8, 32, 12).double()
    mlp.act = nn.GELU(approximate="tanh")
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(mlp(x), mlp.fc2(F.gelu(mlp.fc1(x), approximate="tanh")))
    assert gelu_linear_calls == [1]


def test_activation_checkpointing_uses_the_plain_mlp(tiny, gelu_linear_calls):
    """With act_checkpoint the block is recomputed in backward: the MLP takes the plain path (the fused function
    runs in neither the forward nor the recomputation), and gradients equal the uncheckpointed model's."""
    config = tiny()
    model = MViT(config).train()
    ckpt = MViT(dataclasses.replace(config, act_checkpoint=True)).train()
    ckpt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, config.num_frames, config.crop_size, config.crop_size)
    model(x).square().sum().backward()
    assert gelu_linear_calls == [config.depth]  # once per block without checkpointing
    ckpt(x).square().sum().backward()
    assert gelu_linear_calls == [config.depth]  # none more: not in the forward, not in the recomputation
    for (name, p), q in zip(model.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name, atol=1e-6, rtol=1e-5)
    # Switching checkpointing on a built model switches the MLPs too.
    model.act_checkpoint = True
    assert not any(b.mlp.recompute_act for b in model.blocks)
    model.act_checkpoint = False
    assert all(b.mlp.recompute_act for b in model.blocks)
