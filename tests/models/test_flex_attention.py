"""model.attention=flex: FlexAttention with the decomposed rel-pos bias as a score_mod computes plain's function.

torch 2.14 runs FlexAttention forward on the CPU, eager (its unfused reference) and compiled (inductor's CPU
kernel), but refuses its backward there ("FlexAttention does not support backward on CPU"; inductor has no CPU
backward kernel). The gradient tests therefore run torch's eager reference with that device guard lifted: the
reference is device-agnostic, and it checks what is ours (the q.R tables and the score_mod's indexing, including
the gradients that flow into the captured tables). The CUDA tests at the end check the compiled GPU kernel.
Every test that runs torch's FlexAttention is marked slow: its eager reference goes through Dynamo (an eager
backend), ~1.5 s for the first call in a process and ~0.2 s for each new shape.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from attention_cases import K_SHAPE, Q_SHAPE, assert_matches_plain, attention_inputs
from torch.nn.attention import flex_attention as torch_flex_module

from mvit_video.models import MViT
from mvit_video.models.attention import flex_attention, plain_attention, rel_pos_score_mod
from mvit_video.models.convert import torchvision_config
from mvit_video.models.config import block_configs
from mvit_video.models.flops import count_gflops_meta
from mvit_video.models.mvit import MultiScaleAttention
from mvit_video.utils.errors import ConfigError

POOLED_T = dict(pool_q_stride=[[1, 2, 2, 2]], pool_kv_stride_adaptive=[2, 4, 4])  # t pooled too (as test_mvit)
SHAPES = [((2, 4, 4), (2, 4, 4)), ((4, 6, 6), (2, 3, 3)), ((2, 3, 5), (4, 6, 5)), ((3, 4, 2), (1, 2, 4))]


def _inputs(has_cls, q_shape, k_shape, heads=2, dim=8, batch=2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = int(has_cls)
    nq, nk = s + q_shape[0] * q_shape[1] * q_shape[2], s + k_shape[0] * k_shape[1] * k_shape[2]
    q = torch.randn(batch, heads, nq, dim, generator=g, dtype=dtype)
    k = torch.randn(batch, heads, nk, dim, generator=g, dtype=dtype)
    v = torch.randn(batch, heads, nk, dim, generator=g, dtype=dtype)
    tables = [torch.randn(2 * max(q_shape[i], k_shape[i]) - 1, dim, generator=g, dtype=dtype) for i in range(3)]
    return q, k, v, tables


def _select(tables, axes):
    return [t if ax in axes else None for t, ax in zip(tables, "thw")]


@pytest.mark.slow
@torch.no_grad()
@pytest.mark.parametrize("has_cls", [True, False])
@pytest.mark.parametrize("q_shape,k_shape,axes", [(q, k, "thw") for q, k in SHAPES] + [
    (*SHAPES[1], "hw"), (*SHAPES[3], "t"), (*SHAPES[2], "")])
def test_flex_equals_plain_forward(has_cls, q_shape, k_shape, axes):
    q, k, v, tables = _inputs(has_cls, q_shape, k_shape)
    tables = _select(tables, axes)
    out = flex_attention(q, k, v, q_shape, k_shape, has_cls, *tables)
    torch.testing.assert_close(out, plain_attention(q, k, v, q_shape, k_shape, has_cls, *tables), atol=1e-5, rtol=1e-5)


def test_cls_row_and_column_get_no_bias():
    """With a cls token the score_mod adds nothing to logit (0, j) or (i, 0), the table entries elsewhere."""
    q_shape, k_shape = (2, 2, 2), (1, 2, 2)
    terms = [torch.randn(1, 1, 8, n) for n in k_shape]
    mod = rel_pos_score_mod(terms, "thw", k_shape, has_cls=True)
    i = lambda n: torch.tensor(n)  # noqa: E731 -- the score_mod's scalar index tensors
    assert mod(torch.tensor(0.5), i(0), i(0), i(0), i(3)) == 0.5  # cls query
    assert mod(torch.tensor(0.5), i(0), i(0), i(5), i(0)) == 0.5  # cls key
    # query 5 = spatial 4 = (t1, h0, w0); key 4 = spatial 3 = (t0, h1, w1)
    want = 0.5 + terms[0][0, 0, 4, 0] + terms[1][0, 0, 4, 1] + terms[2][0, 0, 4, 1]
    torch.testing.assert_close(mod(torch.tensor(0.5), i(0), i(0), i(5), i(4)), want)


def _lift_cpu_backward_guard(monkeypatch):
    """Let torch's eager FlexAttention run its backward on the CPU (module docstring)."""
    monkeypatch.setattr(torch_flex_module, "_validate_device", lambda *a: None)


def _assert_grads_close(out, ref, inputs, cotangent, tol=1e-5):
    got = torch.autograd.grad(out, inputs, cotangent, allow_unused=True)
    want = torch.autograd.grad(ref, inputs, cotangent, allow_unused=True)
    for g, w in zip(got, want):
        if w is None:
            assert g is None or torch.count_nonzero(g) == 0
        else:  # tol relative to the gradient's scale (table gradients sum over every query), as fused-vs-plain
            assert (g - w).abs().max().item() <= tol * max(1.0, w.abs().max().item())


@pytest.mark.slow
@pytest.mark.parametrize("has_cls", [True, False])
@pytest.mark.parametrize("q_shape,k_shape,axes", [(*SHAPES[1], "thw"), (*SHAPES[2], "hw")])
def test_flex_gradients_equal_plain(monkeypatch, has_cls, q_shape, k_shape, axes):
    q, k, v, tables = _inputs(has_cls, q_shape, k_shape)
    inputs = [t.requires_grad_() for t in (q, k, v, *tables)]
    tables = _select(tables, axes)
    _lift_cpu_backward_guard(monkeypatch)
    out = flex_attention(q, k, v, q_shape, k_shape, has_cls, *tables)
    ref = plain_attention(q, k, v, q_shape, k_shape, has_cls, *tables)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    _assert_grads_close(out, ref, inputs, torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)))


def _s_block(index: int) -> tuple[MultiScaleAttention, MultiScaleAttention, torch.Tensor, tuple[int, int, int]]:
    """Block `index` of MViTv2-S at 16x224^2 (torchvision's mvit_v2_s) as plain and flex attention, same weights,
    and an input of its size, in float64 (sums over 25k tokens: fp32 rounding would hide a wrong term)."""
    config = dataclasses.replace(torchvision_config(), attention="plain")
    block = block_configs(config)[index]
    torch.manual_seed(0)
    plain = MultiScaleAttention(block, config)
    for table in (plain.rel_pos_t, plain.rel_pos_h, plain.rel_pos_w):  # zero-initialised; make the bias count
        torch.nn.init.trunc_normal_(table, std=0.5)
    plain = plain.double()
    flex = MultiScaleAttention(block, dataclasses.replace(config, attention="flex")).double()
    flex.load_state_dict(plain.state_dict())
    thw = tuple(block.input_size)
    x = torch.randn(1, 1 + thw[0] * thw[1] * thw[2], block.dim_in, dtype=torch.float64)
    return plain, flex, x, thw


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 14])  # q 8x56x56, k 8x7x7, 1 head; q and k 8x7x7, 8 heads (last stage)
def test_flex_equals_plain_on_mvit_v2_s_blocks(monkeypatch, index):
    """Output and every parameter's gradient of an MViTv2-S attention block, flex against plain (float64)."""
    plain, flex, x, thw = _s_block(index)
    with torch.no_grad():
        out_f, q_thw = flex(x, thw)
        out_p, _ = plain(x, thw)
    assert flex.flex and out_f.shape == out_p.shape == (1, 1 + q_thw[0] * q_thw[1] * q_thw[2], plain.proj.out_features)
    torch.testing.assert_close(out_f, out_p, atol=1e-10, rtol=1e-10)
    _lift_cpu_backward_guard(monkeypatch)
    out_f, out_p = flex(x, thw)[0], plain(x, thw)[0]
    cotangent = torch.randn(out_p.shape, generator=torch.Generator().manual_seed(1))
    grads_f = torch.autograd.grad(out_f, list(flex.parameters()), cotangent)
    grads_p = torch.autograd.grad(out_p, list(plain.parameters()), cotangent)
    for (name, _), gf, gp in zip(plain.named_parameters(), grads_f, grads_p):
        assert (gf - gp).abs().max().item() <= 1e-10 * max(1.0, gp.abs().max().item()), name


@pytest.mark.slow  # the first FlexAttention call imports Dynamo (~1 s)
def test_training_on_the_cpu_is_a_config_error(tiny):
    model = MViT(tiny(attention="flex")).train()
    with pytest.raises(ConfigError, match=r"^model\.attention=flex: .* no FlexAttention backward on the CPU"):
        model(torch.randn(2, 3, 8, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("has_cls", [True, False])
def test_flex_model_equals_plain_model_and_shares_its_checkpoint(tiny, has_cls):
    """Same parameters under every attention: the fused model's state dict loads (strict) into flex and plain
    models, and the three give the same logits (eval, no grad: the CPU has no FlexAttention backward)."""
    config = tiny(cls_embed_on=has_cls, **POOLED_T)
    fused = MViT(config).eval()
    for table in (p for n, p in fused.named_parameters() if "rel_pos" in n):
        torch.nn.init.trunc_normal_(table, std=0.5)  # rel-pos tables start at zero; make the bias matter
    models = {"fused": fused}
    for kind in ("flex", "plain"):
        models[kind] = MViT(dataclasses.replace(config, attention=kind)).eval()
        models[kind].load_state_dict(fused.state_dict())
        assert models[kind].state_dict().keys() == fused.state_dict().keys()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        logits = {kind: m(x) for kind, m in models.items()}
    torch.testing.assert_close(logits["flex"], logits["plain"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits["flex"], logits["fused"], atol=1e-5, rtol=1e-5)


def test_flop_count_and_export_switch_flex_off(tiny):
    """FLOPs are counted on the plain path whatever model.attention says (flags restored after), and
    export_model.set_attention turns flex off for the formats it exports."""
    from mvit_video.export_model import set_attention

    def meta(kind):
        with torch.device("meta"):
            return MViT(tiny(attention=kind))

    flex = meta("flex")
    shape = (1, 3, 8, 32, 32)
    assert count_gflops_meta(flex, shape) == pytest.approx(count_gflops_meta(meta("plain"), shape))
    blocks = [m for m in flex.modules() if isinstance(m, MultiScaleAttention)]
    assert all(m.flex and not m.fused for m in blocks)
    set_attention(flex, "fused")
    assert all(m.fused and not m.flex for m in blocks) and flex.config.attention == "fused"


@pytest.mark.slow
def test_compiled_flex_block_on_the_cpu_equals_plain(tiny):
    """A torch.compile'd (inductor) flex attention block runs on the CPU: FlexAttention as a graph break there
    (see attention._flex_kernel; traced into the graph, inductor's CPU kernel fails on the computed tables)."""
    config = tiny(**POOLED_T)
    block = block_configs(config)[1]  # q strided, 2 heads, cls token, t/h/w rel-pos
    plain = MultiScaleAttention(block, dataclasses.replace(config, attention="plain")).eval()
    for table in (plain.rel_pos_t, plain.rel_pos_h, plain.rel_pos_w):
        torch.nn.init.trunc_normal_(table, std=0.5)
    flex = MultiScaleAttention(block, dataclasses.replace(config, attention="flex")).eval()
    flex.load_state_dict(plain.state_dict())
    thw = tuple(block.input_size)
    x = torch.randn(2, 1 + thw[0] * thw[1] * thw[2], block.dim_in)
    with torch.no_grad():
        out, _ = torch.compile(flex, backend="inductor", dynamic=False)(x, thw)
        torch.testing.assert_close(out, plain(x, thw)[0], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- CUDA (gpu_check.sh)



@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager_caller", "in_compile"])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_flex_matches_plain(dtype, compiled):
    """Values and gradients of q, k, v and the rel-pos tables against plain in float32, at MViTv2-S's head width
    (96, not a power of two) with a cls token: the kernel an eager model calls and the one traced in a compile."""
    inputs = attention_inputs(dtype, head_dim=96)
    fn = torch.compile(flex_attention, dynamic=False) if compiled else flex_attention
    out = fn(*inputs[:3], Q_SHAPE, K_SHAPE, True, *inputs[3:])
    out.float().square().sum().backward()
    assert_matches_plain(out, inputs, dtype)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_flex_model_train_step_matches_fused(tiny):
    """A bf16-autocast train step of the tiny model: flex and fused give the same loss and gradients."""
    config = tiny(**POOLED_T)
    models = {}
    for kind in ("fused", "flex"):
        torch.manual_seed(0)
        models[kind] = MViT(dataclasses.replace(config, attention=kind)).cuda().train()
    models["flex"].load_state_dict(models["fused"].state_dict())
    x = torch.randn(2, 3, 8, 32, 32, device="cuda")
    losses = {}
    for kind, model in models.items():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            losses[kind] = model(x).float().square().mean()
        losses[kind].backward()
    torch.testing.assert_close(losses["flex"], losses["fused"], atol=3e-2, rtol=3e-2)
    for (name, p), q in zip(models["fused"].named_parameters(), models["flex"].parameters()):
        scale = p.grad.abs().max().clamp_min(1e-3)
        torch.testing.assert_close(q.grad / scale, p.grad / scale, atol=5e-2, rtol=5e-2, msg=name)
