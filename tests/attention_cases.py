"""The inputs and the float32 reference of the CUDA attention checks (fused under each SDPA backend, flex)."""

from __future__ import annotations

import torch

from mvit_video.models.attention import plain_attention

Q_SHAPE, K_SHAPE = (4, 8, 8), (2, 4, 4)  # a pooled key grid, as in MViTv2's first stage


def attention_inputs(dtype: torch.dtype, head_dim: int, device: str = "cuda") -> list[torch.Tensor]:
    """q, k, v ([2, 2, N, head_dim] with a cls token) and the t, h, w rel-pos tables over Q_SHAPE x K_SHAPE,
    seeded, scaled by 0.5, in `dtype`, requiring grad."""
    g = torch.Generator(device=device).manual_seed(0)
    B, heads = 2, 2
    nq, nk = 1 + Q_SHAPE[0] * Q_SHAPE[1] * Q_SHAPE[2], 1 + K_SHAPE[0] * K_SHAPE[1] * K_SHAPE[2]

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, device=device, generator=g) * 0.5).to(dtype).requires_grad_()

    return [rand(B, heads, nq, head_dim), rand(B, heads, nk, head_dim), rand(B, heads, nk, head_dim),
            rand(2 * 4 - 1, head_dim), rand(2 * 8 - 1, head_dim), rand(2 * 8 - 1, head_dim)]


def assert_matches_plain(out: torch.Tensor, inputs: list[torch.Tensor], dtype: torch.dtype) -> None:
    """`out` (backpropagated through out.float().square().sum()) and the gradients of `inputs` against
    plain_attention in float32; bf16 within 3e-2, gradients relative to their largest value."""
    ref_inputs = [t.detach().float().requires_grad_() for t in inputs]
    ref = plain_attention(*ref_inputs[:3], Q_SHAPE, K_SHAPE, True, *ref_inputs[3:])
    ref.square().sum().backward()
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(out.float(), ref, **tol)
    for got, want in zip((t.grad.float() for t in inputs), (t.grad for t in ref_inputs)):
        scale = want.abs().max().clamp_min(1.0)
        torch.testing.assert_close(got / scale, want / scale, **tol)
