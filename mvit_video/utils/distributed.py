"""Process groups from torchrun or SLURM (srun) environments; NCCL on GPUs, gloo on CPU; small collectives; the
network inside its DDP / torch.compile wrappers (`unwrap`).

Here, below engine/ and eval/, because training, evaluation, extraction and the entry points all use it (it was
mvit_video.engine.distributed, which still works for one release)."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mvit_video.utils.ranks import env_ranks, expand_nodelist  # noqa: F401 -- their old home: du.env_ranks

logger = logging.getLogger(__name__)


def init_distributed(device_type: str = "cpu") -> tuple[int, int, int]:
    """Join the process group when launched with several processes; returns (rank, world_size, local_rank)."""
    rank, world, local_rank, _ = env_ranks()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=30))
        logger.info("joined %s process group: rank %d of %d (local rank %d)", backend, rank, world, local_rank)
    return rank, world, local_rank


def is_dist() -> bool:
    """True inside an initialised multi-process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Global rank (0 when not distributed)."""
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """True on rank 0: the only process that logs and writes files."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when single-process)."""
    if is_dist():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Picklable objects of every rank, in rank order ([obj] when single-process)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Element-wise sum of a list of numbers over ranks (for loss/accuracy totals)."""
    if not is_dist():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank if any rank set it (e.g. a preemption signal seen by one process)."""
    if not is_dist():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def cleanup() -> None:
    """Leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: nn.Module, *, keep_compiled: bool = False) -> nn.Module:
    """The network inside DDP (`.module`) and torch.compile (`._orig_mod`) wrappers, in any order. With
    `keep_compiled`, only an outer DDP is removed: what scoring calls (compiled code, without DDP's collectives)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif not keep_compiled and hasattr(model, "_orig_mod"):  # torch._dynamo's OptimizedModule
            model = model._orig_mod
        else:
            return model
