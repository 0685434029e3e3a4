"""Memory a training step needs, checked before it is used, and out-of-memory errors as one line.

`check_fits` estimates the first step's memory -- weights, gradients, optimizer state, EMA, the batch, and the
activations autograd keeps for backward -- and refuses a configuration that cannot fit in the device's free memory
(CUDA: `torch.cuda.mem_get_info`; CPU: available RAM, within a cgroup limit). The activations are measured, not
modelled: one forward of the real network on the `meta` device (shapes only, no memory, milliseconds) with
`saved_tensors_hooks` counting every tensor saved for backward. The estimate is a lower bound (temporaries inside
ops, the allocator's fragmentation and the CUDA context come on top), so only a configuration that cannot fit is
refused; one that fits the estimate but not the device still ends in one line (`out_of_memory_as_error`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mvit_video.models import build_model
from mvit_video.settings import RunConfig
from mvit_video.utils.errors import UserError

logger = logging.getLogger(__name__)

GiB = 1024**3


class OutOfMemory(UserError):
    """The configuration needs more memory than the device has; the message names the keys to lower."""


def advice(cfg: RunConfig, world_size: int = 1) -> str:
    """What to change: the per-process batch, the clip size, activation checkpointing."""
    per_proc = max(1, cfg.train.batch_size // max(1, world_size))
    parts = [f"lower train.batch_size (now {cfg.train.batch_size}, {per_proc} per process)",
             f"the crop data.train_crop_size ({cfg.data.train_crop_size}) or the frames data.num_frames "
             f"({cfg.data.num_frames})"]
    if not cfg.model.act_checkpoint:
        parts.append("or set model.act_checkpoint=true (recomputes each block in backward)")
    else:
        parts[-1] = "or " + parts[-1] + " (model.act_checkpoint is already on)"
    return ", ".join(parts)


def activation_bytes(model_cfg, num_frames: int, crop: int) -> tuple[int, int]:
    """(bytes autograd keeps for one training clip without, with activation checkpointing), in float32, measured
    by a forward of the network on the `meta` device."""
    with torch.device("meta"):
        model = build_model(model_cfg)
    model.train()
    model.act_checkpoint = False  # per-block amounts below give the checkpointed figure
    seen: set[int] = set()
    keep: list[torch.Tensor] = []  # hold the packed tensors: ids stay unique while counting
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        # Count storages, not tensors: views (q/k/v of one qkv, reshapes, expands) share one. Weights are counted
        # once, elsewhere.
        storage = t.untyped_storage()
        if storage._cdata not in seen and not isinstance(t, nn.Parameter):
            seen.add(storage._cdata)
            keep.append(t)  # alive while counting: a storage's address is not reused for another
            total += storage.nbytes()
        return t

    blocks: list[list[int]] = []  # per block: [total before, total after, input bytes]

    def pre(module: nn.Module, args: tuple) -> None:
        blocks.append([total, 0, args[0].numel() * args[0].element_size()])

    def post(module: nn.Module, args: tuple, out: object) -> None:
        blocks[-1][1] = total

    hooks = [h for b in getattr(model, "blocks", []) for h in (b.register_forward_pre_hook(pre),
                                                                b.register_forward_hook(post))]
    x = torch.empty(1, 3, num_frames, crop, crop, device="meta")
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _FusedAttentionShapes():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    inside = [after - before for before, after, _ in blocks]
    # Checkpointed: each block keeps only its input; backward recomputes one block at a time.
    checkpointed = total - sum(inside) + sum(b[2] for b in blocks) + max(inside, default=0)
    return total, checkpointed


class _FusedAttention(torch.autograd.Function):
    """What a fused attention kernel keeps for backward (q, k, v, the output and one float per query row), with
    the output's shape: on `meta` PyTorch picks the math path, which would keep the full attention matrix."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1], dtype=torch.float32))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        raise RuntimeError("shape-only attention: not for training")


class _FusedAttentionShapes(TorchFunctionMode):
    """Inside it (this thread only), F.scaled_dot_product_attention is `_FusedAttention`: PyTorch's public way to
    stand in for one function, where patching the module attribute would change it for every thread."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is F.scaled_dot_product_attention:
            return _FusedAttention.apply(*args[:3])
        return func(*args, **(kwargs or {}))


# Bytes kept per first-stage token, channel and block, as an upper bound: measured 7-35 over the presets (35 for H on
# a small input), so 128 leaves a wide margin. Below it, a configuration fits for sure and no measurement is needed.
_BOUND_FLOATS_PER_TOKEN_CHANNEL_BLOCK = 128


def step_bytes(cfg: RunConfig, world_size: int, amp: bool, n_params: int | None = None, *,
               upper_bound: bool = False) -> dict[str, float]:
    """Estimated bytes of one training step per process: weights, grads, optimizer state and EMA; the batch;
    the activations kept for backward (measured on `meta`; with `upper_bound`, a generous bound from the token
    count instead, which costs nothing). `n_params`: the model's parameter count when already known."""
    if n_params is None:
        with torch.device("meta"):
            n_params = sum(p.numel() for p in build_model(cfg.model).parameters())
    per_proc = max(1, cfg.train.batch_size // max(1, world_size))
    frames, crop = cfg.data.num_frames, cfg.data.train_crop_size
    if upper_bound:
        tokens = math.prod(math.ceil(n / s) for n, s in zip((frames, crop, crop), cfg.model.patch_stride)) + 1
        act = 4.0 * tokens * cfg.model.embed_dim * (cfg.model.depth or 1) * _BOUND_FLOATS_PER_TOKEN_CHANNEL_BLOCK
    else:
        full, ckpt = activation_bytes(cfg.model, frames, crop)
        act = float(ckpt if cfg.model.act_checkpoint else full)
        if amp:  # autocast keeps most activations in 16 bits; norms and softmax stay float32
            act *= 0.6
    states = 2 if cfg.solver.optimizing_method == "adamw" else 1
    weights = 4 * n_params * (2 + states + (1 if cfg.train.ema.enable else 0))  # weights, grads, states, EMA
    batch = 4 * per_proc * 3 * frames * crop ** 2
    return {"weights": float(weights), "activations": act * per_proc, "batch": float(batch)}


def available_bytes(device: torch.device) -> int | None:
    """Free memory of `device`: CUDA's free bytes, or on CPU MemAvailable within the cgroup's limit; None when
    unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        return None
    limit = _cgroup_headroom()
    return min(v for v in (avail, limit) if v is not None) if avail is not None else limit


def _cgroup_headroom() -> int | None:
    """Bytes left under a cgroup v2 memory limit (containers, SLURM's ConstrainRAMSpace); None without a limit."""
    try:
        base = Path("/sys/fs/cgroup")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def check_fits(cfg: RunConfig, device: torch.device, world_size: int, amp: bool,
               n_params: int | None = None) -> dict[str, float] | None:
    """Refuse (OutOfMemory, one line) a training step that cannot fit in `device`'s free memory; returns the
    estimate, or None when a free upper bound already fits (the small first run: no measurement, no cost). Call
    before the model is moved to the device."""
    free = available_bytes(device)
    if free is None or sum(step_bytes(cfg, world_size, amp, n_params, upper_bound=True).values()) <= free:
        return None
    need = step_bytes(cfg, world_size, amp, n_params)
    total = sum(need.values())
    if total > free:
        where = f"the GPU's {free / GiB:.1f} GiB free" if device.type == "cuda" else \
            f"the {free / GiB:.1f} GiB of RAM available"
        raise OutOfMemory(
            f"this configuration needs at least {total / GiB:.1f} GiB per process for a training step "
            f"(activations {need['activations'] / GiB:.1f} GiB for {max(1, cfg.train.batch_size // world_size)} "
            f"clips of {cfg.data.num_frames}x{cfg.data.train_crop_size}x{cfg.data.train_crop_size}), more than "
            f"{where}: {advice(cfg, world_size)}")
    return need


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


@contextlib.contextmanager
def out_of_memory_as_error(cfg: RunConfig, world_size: int = 1) -> Iterator[None]:
    """Turn a CUDA or CPU out-of-memory error raised inside into OutOfMemory (one line with the advice)."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        if not _is_oom(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OutOfMemory(f"out of memory during training ({first[:160]}): {advice(cfg, world_size)}") from None
