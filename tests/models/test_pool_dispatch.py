"""Which kernel path the depthwise pooling conv takes per device, pinned on CPU (CI has no GPU).

On an H200 a channels-last depthwise 3-D conv went to cuDNN, whose bf16 weight gradient took 95% of the train step
(issue #9). The CUDA decision is checked here with fake CUDA tensors: the whole model runs its forward on
"cuda" tensors that carry only shapes and strides, and every pooling conv's input layout is recorded.
"""

from __future__ import annotations

import pytest

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from mvit_video.models import MViT
from mvit_video.models import mvit as mvit_module
from mvit_video.models.ops import DepthwiseConv3dFn


class _ConvInputs(TorchDispatchMode):
    """Records (device type, NCDHW-contiguous?, channels-last?) of every depthwise convolution's input."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, bool, bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution.default and args[1].shape[1] == 1:  # groups == channels
            x = args[0]
            self.seen.append((x.device.type, x.is_contiguous(),
                              x.is_contiguous(memory_format=torch.channels_last_3d)))
        return func(*args, **(kwargs or {}))


@pytest.mark.slow
def test_cuda_pooling_convs_get_ncdhw_input_and_no_custom_backward(tiny, monkeypatch) -> None:
    custom = []
    monkeypatch.setattr(DepthwiseConv3dFn, "apply", lambda *a: custom.append(a))
    model = MViT(tiny())
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = model.to("cuda")
        x = torch.empty(2, 3, 8, 32, 32, device="cuda", requires_grad=True)
        with _ConvInputs() as spy:
            model.train()(x)
    assert len(spy.seen) == 9  # q, k, v pooling in each of 3 blocks
    assert all(dev == "cuda" and ncdhw and not cl for dev, ncdhw, cl in spy.seen), spy.seen
    assert custom == []  # CUDA uses aten's native depthwise backward


def test_cpu_pooling_convs_stay_channels_last_with_the_fast_backward(tiny) -> None:
    model = MViT(tiny()).train()
    with _ConvInputs() as spy:
        out = model(torch.randn(2, 3, 8, 32, 32))
    assert len(spy.seen) == 9 and all(dev == "cpu" and cl for dev, _, cl in spy.seen), spy.seen
    seen, stack = set(), [out.grad_fn]
    while stack:  # the autograd graph holds the custom backward on CPU
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(f for f, _ in node.next_functions)
    assert "DepthwiseConv3dFnBackward" in {node.name() for node in seen}


def test_layout_decision_per_device() -> None:
    assert mvit_module.depthwise_memory_format("cpu") == torch.channels_last_3d
    assert mvit_module.depthwise_memory_format("cuda") == torch.contiguous_format
    assert mvit_module.use_custom_depthwise_backward("cpu")
    assert not mvit_module.use_custom_depthwise_backward("cuda")
