"""DDP on CPU: every gradient has its parameter's layout, so the reducer's buckets take them without the "Grad strides
do not match bucket view strides" warning (and its extra copies). The cause was the depthwise pooling conv's weight
gradient, which oneDNN returns channels-last for a (C, 1, kT, kH, kW) weight."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from tiny import tiny_config

from mvit_video.models import build_model
from mvit_video.models.mvit import HeadwiseConv3d


@pytest.mark.parametrize("heads", [1, 2])
def test_the_depthwise_weight_gradient_has_the_parameters_layout(heads: int) -> None:
    conv = HeadwiseConv3d(8, heads, (3, 3, 3), (1, 2, 2))
    conv(torch.randn(2, 8 * heads, 4, 8, 8)).sum().backward()
    assert conv.weight.grad.stride() == conv.weight.stride()


@pytest.mark.slow
def test_ddp_on_cpu_trains_the_model_without_the_grad_stride_warning(tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = build_model(tiny_config()).train()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                ddp(torch.randn(2, 3, 4, 32, 32)).sum().backward()
        assert not [w for w in caught if "stride" in str(w.message)], [str(w.message) for w in caught]
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.stride() == p.stride(), name
    finally:
        dist.destroy_process_group()
