"""Pooling attention math: decomposed 3-D relative positions and the three attention formulations.

`plain_attention` is the reference (PySlowFast's formulation: dense logits, rel-pos added, softmax, @v).
`fused_attention` computes the same function without materialising the (N_q x N_k) bias: the relative terms
are appended to the (pre-scaled) queries and matching one-hot position columns to the keys, so
q_ext . k_ext = scale*q.k + Rt[t_q, t_k] + Rh[h_q, h_k] + Rw[w_q, w_k], and one
`F.scaled_dot_product_attention(..., scale=1)` call can run a fused (flash / memory-efficient) kernel.
`flex_attention` computes it with FlexAttention: q, k, v go in as they are (no widened copies) and a `score_mod`
adds the per-axis q.R tables, indexed by the query and the key's (t, h, w), to each logit inside the kernel.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from mvit_video.utils.errors import ConfigError

Size3 = tuple[int, int, int]


def rel_pos_distance(q_len: int, k_len: int, device: torch.device | None = None) -> Tensor:
    """Table row for each (query, key) pair along one axis: floor(i*q_ratio - j*k_ratio + (k_len-1)*k_ratio).

    The ratios rescale the coarser axis so q and k of different lengths (pooled k/v) index one table, as
    PySlowFast does. Returns LongTensor [q_len, k_len] with values in [0, 2*max(q_len, k_len) - 2].
    """
    q_ratio = max(k_len / q_len, 1.0)
    k_ratio = max(q_len / k_len, 1.0)
    dist = torch.arange(q_len, device=device)[:, None] * q_ratio - torch.arange(k_len, device=device)[None, :] * k_ratio
    dist = dist + (k_len - 1) * k_ratio
    return dist.long()


def resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """Linearly interpolate a [L, C] table to [length, C] (identity when L == length)."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear")  # (1, C, length)
    return resized[0].t()


def rel_pos_lookup(table: Tensor, q_len: int, k_len: int) -> Tensor:
    """Relative embeddings for every (query, key) pair along one axis: [q_len, k_len, C]."""
    table = resize_rel_pos(table, 2 * max(q_len, k_len) - 1)
    return table[rel_pos_distance(q_len, k_len, table.device)]


def rel_pos_terms(
    q: Tensor, q_shape: Size3, k_shape: Size3, rel_t: Tensor | None, rel_h: Tensor | None, rel_w: Tensor | None
) -> list[Tensor]:
    """Per-query relative-position scores q.R for each axis that has a table.

    q: [B, heads, Tq*Hq*Wq, C] (spatial tokens only, unscaled). Returns a list (t, h, w order, present axes only)
    of [B, heads, Nq, k_len_axis] tensors.
    """
    B, n, _, C = q.shape
    qt, qh, qw = q_shape
    kt, kh, kw = k_shape
    r_q = q.reshape(B, n, qt, qh, qw, C)
    terms = []
    if rel_t is not None:
        Rt = rel_pos_lookup(rel_t, qt, kt)  # (qt, kt, C)
        terms.append(torch.einsum("bythwc,tkc->bythwk", r_q, Rt).reshape(B, n, -1, kt))
    if rel_h is not None:
        Rh = rel_pos_lookup(rel_h, qh, kh)
        terms.append(torch.einsum("bythwc,hkc->bythwk", r_q, Rh).reshape(B, n, -1, kh))
    if rel_w is not None:
        Rw = rel_pos_lookup(rel_w, qw, kw)
        terms.append(torch.einsum("bythwc,wkc->bythwk", r_q, Rw).reshape(B, n, -1, kw))
    return terms


def rel_axes(rel_t: Tensor | None, rel_h: Tensor | None, rel_w: Tensor | None) -> str:
    """The axes ("t", "h", "w", in that order) that have a relative-position table: the order of rel_pos_terms."""
    return "".join(ax for ax, t in zip("thw", (rel_t, rel_h, rel_w)) if t is not None)


def plain_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_shape: Size3,
    k_shape: Size3,
    has_cls: bool,
    rel_t: Tensor | None = None,
    rel_h: Tensor | None = None,
    rel_w: Tensor | None = None,
) -> Tensor:
    """Reference attention: softmax((q*scale) @ k^T + rel-pos bias) @ v. q/k/v: [B, heads, N, C] -> [B, heads, Nq, C]."""
    s = 1 if has_cls else 0
    scale = q.shape[-1] ** -0.5
    attn = (q * scale) @ k.transpose(-2, -1)
    terms = rel_pos_terms(q[:, :, s:], q_shape, k_shape, rel_t, rel_h, rel_w)
    if terms:
        B, n = q.shape[:2]
        qt, qh, qw = q_shape
        kt, kh, kw = k_shape
        bias = attn.new_zeros(()).expand(B, n, qt, qh, qw, kt, kh, kw)
        for ax, term in zip(rel_axes(rel_t, rel_h, rel_w), terms):
            term = term.reshape(B, n, qt, qh, qw, -1)
            if ax == "t":
                bias = bias + term[..., :, None, None]
            elif ax == "h":
                bias = bias + term[..., None, :, None]
            else:
                bias = bias + term[..., None, None, :]
        bias = bias.reshape(B, n, qt * qh * qw, kt * kh * kw)
        attn = attn + F.pad(bias, (s, 0, s, 0))  # the cls row and column get no bias
    attn = attn.softmax(dim=-1)
    return attn @ v


def key_position_one_hot(k_shape: Size3, axes: str, has_cls: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[Nk, sum of k lengths over axes] one-hot of each key's t/h/w position (cls key: all zeros)."""
    kt, kh, kw = k_shape
    idx = torch.arange(kt * kh * kw, device=device)
    cols = []
    if "t" in axes:
        cols.append(F.one_hot(idx // (kh * kw), kt))
    if "h" in axes:
        cols.append(F.one_hot((idx // kw) % kh, kh))
    if "w" in axes:
        cols.append(F.one_hot(idx % kw, kw))
    one_hot = torch.cat(cols, dim=-1).to(dtype)
    if has_cls:
        one_hot = F.pad(one_hot, (0, 0, 1, 0))
    return one_hot


def fused_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_shape: Size3,
    k_shape: Size3,
    has_cls: bool,
    rel_t: Tensor | None = None,
    rel_h: Tensor | None = None,
    rel_w: Tensor | None = None,
) -> Tensor:
    """Same function as `plain_attention`, through F.scaled_dot_product_attention with rel-pos folded in.

    Width of the extended q/k: C + kt + kh + kw, rounded up to a multiple of 8 with zero columns, and v is
    zero-padded to the same width (its extra output columns are dropped): fused kernels (CPU flash, CUDA
    flash / memory-efficient) need equal q/k/v head dims that are multiples of 8.
    """
    C = q.shape[-1]
    scale = C**-0.5
    axes = rel_axes(rel_t, rel_h, rel_w)
    if not axes:
        return F.scaled_dot_product_attention(q, k, v)
    s = 1 if has_cls else 0
    B, n, Nk, _ = k.shape
    terms = rel_pos_terms(q[:, :, s:], q_shape, k_shape, rel_t, rel_h, rel_w)
    rel = torch.cat(terms, dim=-1) if len(terms) > 1 else terms[0]
    extra = rel.shape[-1]
    pad = (-(C + extra)) % 8
    rel = F.pad(rel, (0, pad, s, 0))  # zero row for the cls query, zero columns up to a multiple of 8
    q_ext = torch.cat([q * scale, rel.to(q.dtype)], dim=-1)
    one_hot = key_position_one_hot(k_shape, axes, has_cls, k.dtype, k.device)
    one_hot = F.pad(one_hot, (0, pad)).expand(B, n, Nk, extra + pad)
    k_ext = torch.cat([k, one_hot], dim=-1)
    v_ext = F.pad(v, (0, extra + pad))
    out = F.scaled_dot_product_attention(q_ext, k_ext, v_ext, scale=1.0)
    return out[..., :C]


def rel_pos_score_mod(terms: list[Tensor], axes: str, k_shape: Size3, has_cls: bool) -> Callable[..., Tensor]:
    """FlexAttention score_mod adding the decomposed rel-pos bias: score + sum over axes of table[b, h, q, key's pos].

    terms: `rel_pos_terms`' [B, heads, Nq_spatial, k_len_axis] tables (spatial queries only), one per letter of
    `axes`. With a cls token, query/key index 0 is the cls token and its row and column get no bias (as in
    `plain_attention`); the other indices are shifted by one and clamped so every table read stays in range.
    """
    kt, kh, kw = k_shape
    s = int(has_cls)

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        qi, j = q_idx - s, kv_idx - s  # spatial query / key index (-1: the cls token)
        if s:
            qi, j = qi.clamp(min=0), j.clamp(min=0)
        bias = None
        for ax, table in zip(axes, terms):
            pos = j // (kh * kw) if ax == "t" else (j // kw) % kh if ax == "h" else j % kw
            term = table[b, h, qi, pos]
            bias = term if bias is None else bias + term
        if s:
            bias = torch.where((q_idx >= s) & (kv_idx >= s), bias, torch.zeros_like(bias))
        return score + bias

    return score_mod


_COMPILED_FLEX: Callable[..., Tensor] | None = None
_CPU_FLEX: Callable[..., Tensor] | None = None


def _flex_kernel(q: Tensor) -> Callable[..., Tensor]:
    """torch's flex_attention as this call should run it.

    GPU: called eagerly, torch runs FlexAttention as an unfused reference that materialises every logit; compiled it
    generates one fused kernel, so eager callers get it compiled once (dynamic shapes after a first recompile), and
    inside a torch.compile'd model (train.compile) it is traced as it is.
    CPU (forward only): torch's eager reference, kept out of any enclosing graph (a graph break): inductor's CPU
    FlexAttention kernel cannot read tables computed in the same graph (torch 2.14: "All the buffers in the score
    and mask subgraph should be in kernel_group.args.input_buffers"), and compiling per shape costs seconds.
    The import is here because torch.nn.attention.flex_attention costs ~0.4 s and only this path needs it.
    """
    global _COMPILED_FLEX, _CPU_FLEX
    from torch.nn.attention.flex_attention import flex_attention as torch_flex

    if q.device.type == "cpu":
        if _CPU_FLEX is None:
            _CPU_FLEX = torch.compiler.disable(torch_flex)
        return _CPU_FLEX
    if torch.compiler.is_compiling():
        return torch_flex
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(torch_flex)
    return _COMPILED_FLEX


def flex_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_shape: Size3,
    k_shape: Size3,
    has_cls: bool,
    rel_t: Tensor | None = None,
    rel_h: Tensor | None = None,
    rel_w: Tensor | None = None,
) -> Tensor:
    """Same function as `plain_attention`, through torch's FlexAttention with the rel-pos bias as a score_mod.

    The q.R tables are computed once per call ([B, heads, Nq, k_len] per axis, as `plain_attention` computes them);
    q, k and v are not copied or widened. torch (2.14) has no FlexAttention backward on the CPU: training there
    becomes a ConfigError (fused and plain compute the same function with the same parameters).
    """
    kernel = _flex_kernel(q)
    axes = rel_axes(rel_t, rel_h, rel_w)
    score_mod = None
    if axes:
        terms = rel_pos_terms(q[:, :, int(has_cls):], q_shape, k_shape, rel_t, rel_h, rel_w)
        score_mod = rel_pos_score_mod(terms, axes, k_shape, has_cls)
    if q.device.type != "cpu":
        return kernel(q, k, v, score_mod=score_mod)
    try:  # only here: no exception handling in the graphs the GPU path is traced into
        return kernel(q, k, v, score_mod=score_mod)
    except NotImplementedError as e:
        if "backward on CPU" not in str(e):
            raise
        raise ConfigError(
            f"model.attention=flex: torch {torch.__version__} has no FlexAttention backward on the CPU; train "
            "there with model.attention=fused (the same function and parameters, checkpoints interchangeable)"
        ) from e
