"""Relative-position math and fused attention == plain attention (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from mvit_video.models.attention import (
    fused_attention,
    plain_attention,
    rel_pos_distance,
    rel_pos_lookup,
    resize_rel_pos,
)


def test_rel_pos_distance_equal_lengths():
    # dist[i, j] = i - j + (k - 1): row 0 of the table is the largest negative offset.
    d = rel_pos_distance(3, 3)
    assert d.tolist() == [[2, 1, 0], [3, 2, 1], [4, 3, 2]]


def test_rel_pos_distance_pooled_keys_scale_the_coarser_axis():
    # q 4 long, k 2 long: k_ratio = 2 -> dist = i - 2j + 2 (PySlowFast's rule).
    assert rel_pos_distance(4, 2).tolist() == [[2, 0], [3, 1], [4, 2], [5, 3]]
    # q 2 long, k 4 long: q_ratio = 2 -> dist = 2i - j + 3.
    assert rel_pos_distance(2, 4).tolist() == [[3, 2, 1, 0], [5, 4, 3, 2]]
    assert rel_pos_distance(7, 3).max() <= 2 * 7 - 2


def test_resize_is_identity_at_build_size_and_linear_otherwise():
    table = torch.randn(7, 4)
    assert resize_rel_pos(table, 7) is table
    ramp = torch.arange(5.0)[:, None].repeat(1, 3)  # rows 0..4
    resized = resize_rel_pos(ramp, 9)
    assert resized.shape == (9, 3)
    # F.interpolate(linear, align_corners=False) of a ramp stays monotone between the end values.
    assert torch.all(resized[1:] >= resized[:-1]) and resized.min() >= 0 and resized.max() <= 4
    assert rel_pos_lookup(table, 4, 4).shape == (4, 4, 4)
    assert torch.equal(rel_pos_lookup(table, 4, 4)[1, 2], table[rel_pos_distance(4, 4)[1, 2]])


def _inputs(has_cls, q_shape, k_shape, heads=2, dim=8, batch=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    s = int(has_cls)
    nq, nk = s + q_shape[0] * q_shape[1] * q_shape[2], s + k_shape[0] * k_shape[1] * k_shape[2]
    q = torch.randn(batch, heads, nq, dim, generator=g, dtype=dtype)
    k = torch.randn(batch, heads, nk, dim, generator=g, dtype=dtype)
    v = torch.randn(batch, heads, nk, dim, generator=g, dtype=dtype)
    tables = [
        torch.randn(2 * max(q_shape[0], k_shape[0]) - 1, dim, generator=g, dtype=dtype),
        torch.randn(2 * max(q_shape[1], k_shape[1]) - 1, dim, generator=g, dtype=dtype),
        torch.randn(2 * max(q_shape[2], k_shape[2]) - 1, dim, generator=g, dtype=dtype),
    ]
    return [t.requires_grad_() for t in (q, k, v, *tables)]


@pytest.mark.parametrize("has_cls", [True, False])
@pytest.mark.parametrize(
    "q_shape,k_shape",
    [((2, 4, 4), (2, 4, 4)), ((4, 6, 6), (2, 3, 3)), ((2, 3, 5), (4, 6, 5)), ((3, 4, 2), (1, 2, 4))],
)
@pytest.mark.parametrize("axes", ["thw", "hw", "t"])
def test_fused_equals_plain_fp32(has_cls, q_shape, k_shape, axes):
    inputs = _inputs(has_cls, q_shape, k_shape, dtype=torch.float32)
    q, k, v, rt, rh, rw = inputs
    tables = [rt if "t" in axes else None, rh if "h" in axes else None, rw if "w" in axes else None]
    out_plain = plain_attention(q, k, v, q_shape, k_shape, has_cls, *tables)
    cotangent = torch.randn(out_plain.shape, generator=torch.Generator().manual_seed(1))
    grads_plain = torch.autograd.grad(out_plain, [q, k, v, rt, rh, rw], cotangent, allow_unused=True)
    out_fused = fused_attention(q, k, v, q_shape, k_shape, has_cls, *tables)
    grads_fused = torch.autograd.grad(out_fused, [q, k, v, rt, rh, rw], cotangent, allow_unused=True)
    assert out_fused.shape == out_plain.shape == (2, 2, q.shape[2], 8)
    torch.testing.assert_close(out_fused, out_plain, atol=1e-5, rtol=1e-5)
    for gf, gp in zip(grads_fused, grads_plain):
        if gp is None:
            assert gf is None or torch.count_nonzero(gf) == 0
        else:
            # 1e-5 relative to the gradient's scale (table gradients sum over every query).
            scale = max(1.0, gp.abs().max().item())
            assert (gf - gp).abs().max().item() <= 1e-5 * scale


def test_plain_attention_matches_a_hand_built_bias():
    """The plain path adds Rt[t_q,t_k] + Rh[h_q,h_k] + Rw[w_q,w_k] (q unscaled) to every non-cls logit."""
    q_shape, k_shape = (2, 2, 2), (1, 2, 2)
    q, k, v, rt, rh, rw = [t.detach() for t in _inputs(True, q_shape, k_shape, heads=1, batch=1)]
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    pos_q = [(t, h, w) for t in range(2) for h in range(2) for w in range(2)]
    pos_k = [(t, h, w) for t in range(1) for h in range(2) for w in range(2)]
    Rt, Rh, Rw = rel_pos_lookup(rt, 2, 1), rel_pos_lookup(rh, 2, 2), rel_pos_lookup(rw, 2, 2)
    for i, (t, h, w) in enumerate(pos_q):
        for j, (tk, hk, wk) in enumerate(pos_k):
            qi = q[0, 0, 1 + i]
            logits[0, 0, 1 + i, 1 + j] += qi @ Rt[t, tk] + qi @ Rh[h, hk] + qi @ Rw[w, wk]
    expected = logits.softmax(-1) @ v
    torch.testing.assert_close(plain_attention(q, k, v, q_shape, k_shape, True, rt, rh, rw), expected)


def test_fused_without_rel_pos_is_sdpa():
    q, k, v, *_ = [t.detach() for t in _inputs(False, (2, 2, 2), (2, 2, 2), dtype=torch.float32)]
    torch.testing.assert_close(fused_attention(q, k, v, (2, 2, 2), (2, 2, 2), False), plain_attention(q, k, v, (2, 2, 2), (2, 2, 2), False))
