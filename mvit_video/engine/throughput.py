"""Training throughput in the units people compare: clips/s per GPU and overall, data-wait share, and MFU.

MFU (model FLOPs utilisation) = achieved model FLOP/s / the GPU's dense bf16 peak. Model FLOPs per clip are
fvcore's forward count (what `python -m mvit_video.stats` prints, 1 multiply-add = 1 flop) x 2 flops per
multiply-add x 3 for forward + backward, x 4 with activation checkpointing (the forward runs twice).
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

# Dense bf16 tensor-core peak, TFLOP/s, from the vendors' datasheets (no sparsity). Matched by substring of
# torch.cuda.get_device_name(), first match wins, so the more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM / NVL / HBM3
    ("H200", 989.0),
    ("H800", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A6000", 155.0),
    ("A40", 150.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
    ("V100", 125.0),  # fp16 (V100 has no bf16)
)


def peak_flops(device: torch.device, override_tflops: float | None = None) -> float | None:
    """The device's dense bf16 peak in FLOP/s: `override_tflops` if given, else the table; None if unknown/CPU."""
    if override_tflops:
        return float(override_tflops) * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops * 1e12
    logger.info("MFU: no peak FLOP/s known for %r; set train.peak_tflops to report it", name)
    return None


def train_flops_per_clip(forward_gflops: float, act_checkpoint: bool) -> float:
    """Model FLOPs of one training clip from fvcore's forward GFLOPs (multiply-adds)."""
    passes = 4 if act_checkpoint else 3
    return forward_gflops * 1e9 * 2 * passes


def mfu(clips_per_s_per_gpu: float, flops_per_clip: float | None, peak: float | None) -> float | None:
    """Fraction of the peak used by the model's FLOPs (None when either is unknown)."""
    if not flops_per_clip or not peak:
        return None
    return clips_per_s_per_gpu * flops_per_clip / peak
