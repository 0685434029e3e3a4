"""CUDA-only checks: `python -m pytest -m cuda tests/cuda` on a machine with a GPU (skipped, with the reason, without).

Fused vs plain attention under each SDPA backend, the pooling conv against a float64 reference, AMP train steps,
torch.compile vs eager, and a tiny train + multi-view evaluate run through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from attention_cases import K_SHAPE, Q_SHAPE, assert_matches_plain, attention_inputs
from tiny import tiny_config, tiny_overrides

from mvit_video.models import MViT, MViTConfig
from mvit_video.models.attention import fused_attention
from mvit_video.models.mvit import HeadwiseConv3d

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _tiny_model_config() -> MViTConfig:
    """The shared tiny network (tests/tiny.py) at width 32 on 8x64x64 clips, 5 classes: a GPU-sized toy."""
    return tiny_config(num_classes=5, num_frames=8, crop_size=64, embed_dim=32)


def _backend(name: str):
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[name]


@pytest.mark.parametrize("dtype, backend", [
    (torch.float32, "efficient"), (torch.float32, "math"),
    (torch.bfloat16, "flash"), (torch.bfloat16, "efficient"), (torch.bfloat16, "cudnn"),
])
def test_fused_attention_matches_plain_under_each_backend(dtype: torch.dtype, backend: str) -> None:
    """Values and gradients of q, k, v and the rel-pos tables, against the plain formulation in float32."""
    from torch.nn.attention import sdpa_kernel

    inputs = attention_inputs(dtype, head_dim=64)
    with sdpa_kernel([_backend(backend)]):
        out = fused_attention(*inputs[:3], Q_SHAPE, K_SHAPE, True, *inputs[3:])
        out.float().square().sum().backward()
    assert_matches_plain(out, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pooling_conv_matches_float64_reference(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    pool = HeadwiseConv3d(head_dim=16, num_heads=3, kernel=(3, 3, 3), stride=(1, 2, 2))
    x64 = torch.randn(2, 48, 8, 14, 14, dtype=torch.float64, requires_grad=True)
    w64 = pool.weight.detach().double().repeat(3, 1, 1, 1, 1).requires_grad_()
    ref = F.conv3d(x64, w64, None, (1, 2, 2), (1, 1, 1), 1, 48)
    grad_out = torch.randn_like(ref)
    ref.backward(grad_out)

    pool = pool.cuda()
    x = x64.detach().to("cuda", dtype).requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = pool(x)
    out.backward(grad_out.to("cuda", out.dtype))
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(out.double().cpu(), ref.detach(), **tol)
    torch.testing.assert_close(x.grad.double().cpu(), x64.grad, **tol)
    weight_grad = w64.grad.reshape(3, 16, 1, 3, 3, 3).sum(0)  # the shared per-head weight
    scale = weight_grad.abs().max()
    torch.testing.assert_close(pool.weight.grad.double().cpu() / scale, weight_grad / scale, **tol)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_train_steps_reduce_the_loss(amp: str) -> None:
    torch.manual_seed(0)
    model = MViT(_tiny_model_config()).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    x = torch.randn(4, 3, 8, 64, 64, device="cuda")
    y = torch.tensor([0, 1, 2, 3], device="cuda")
    losses = []
    for _ in range(8):
        with torch.autocast("cuda", dtype=dtype):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] * 0.7, losses
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_compiled_matches_eager_forward_and_backward() -> None:
    torch.manual_seed(0)
    model = MViT(_tiny_model_config()).cuda().train()
    x = torch.randn(2, 3, 8, 64, 64, device="cuda")
    compiled = torch.compile(model)
    out_c = compiled(x)
    out_c.sum().backward()
    grads_c = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    out_e = model(x)
    out_e.sum().backward()
    torch.testing.assert_close(out_c, out_e, atol=2e-3, rtol=2e-3)
    for n, p in model.named_parameters():
        scale = p.grad.abs().max().clamp_min(1e-3)
        torch.testing.assert_close(grads_c[n] / scale, p.grad / scale, atol=5e-3, rtol=5e-3, msg=n)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        model.eval()
        torch.testing.assert_close(compiled(x).float(), model(x).float(), atol=5e-2, rtol=5e-2)


def test_tiny_train_then_evaluate_on_cuda(kinetics_list_dir: Path, tmp_path: Path) -> None:
    """The CLI on a GPU: bf16 AMP, torch.compile (auto), periodic val, final multi-view test, then `evaluate`."""
    out = tmp_path / "run"
    overrides = tiny_overrides(kinetics_list_dir, out, "device=cuda", "test.enable=true",
                               "data_loader.num_workers=2", "test.num_ensemble_views=2")
    run = subprocess.run([sys.executable, "-m", "mvit_video.train", *overrides], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert "torch.compile on" in log and "MFU" in log
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_lines = [m for m in lines if m["split"] == "train"]
    assert len(train_lines) == 2 and all(m["clips_per_s_per_gpu"] > 0 for m in train_lines)
    assert all(m["mfu"] is None or 0 < m["mfu"] < 1 for m in train_lines)
    assert [m for m in lines if m["split"] == "test"][0]["videos"] == 4
    ev = subprocess.run([sys.executable, "-m", "mvit_video.evaluate", *overrides], capture_output=True, text=True,
                        timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert len((out / "eval" / "checkpoint_epoch_00002" / "predictions.jsonl").read_text().splitlines()) == 4
