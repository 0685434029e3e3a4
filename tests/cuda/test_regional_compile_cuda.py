"""CUDA-only: regional compilation (inductor, engine/compile.py) gives eager's logits and gradients, and compiles
one graph per distinct block shape. `python -m pytest -m cuda tests/cuda` (skipped, with the reason, without a GPU)."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny import tiny_config

from mvit_video.engine.compile import compile_model, distinct_block_shapes
from mvit_video.models import MViT

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_regional_compiled_matches_eager_logits_and_grads_with_one_graph_per_shape() -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    torch.manual_seed(0)
    # 5 blocks: 3 at one shape (drop path 0 in the first), a pooling block, one more; drop path off for equality
    config = tiny_config(num_classes=5, num_frames=8, crop_size=64, embed_dim=32, depths=None, depth=5,
                         pool_q_stride=[[3, 1, 2, 2]], dim_mul=[[3, 2.0]], head_mul=[[3, 2.0]], droppath_rate=0.0)
    model = MViT(config).cuda().train()
    eager = copy.deepcopy(model)  # the same weights, never compiled
    x = torch.randn(2, 3, 8, 64, 64, device="cuda")
    compiled = compile_model(model, "regional")
    out_c = compiled(x)
    out_c.sum().backward()
    assert int(counters["stats"]["unique_graphs"]) == distinct_block_shapes(model) == 3
    out_e = eager(x)
    out_e.sum().backward()
    torch.testing.assert_close(out_c, out_e, atol=2e-3, rtol=2e-3)
    grads_e = dict(eager.named_parameters())
    for n, p in model.named_parameters():
        scale = grads_e[n].grad.abs().max().clamp_min(1e-3)
        torch.testing.assert_close(p.grad / scale, grads_e[n].grad / scale, atol=5e-3, rtol=5e-3, msg=n)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        model.eval(), eager.eval()
        torch.testing.assert_close(compiled(x).float(), eager(x).float(), atol=5e-2, rtol=5e-2)
    torch._dynamo.reset()
