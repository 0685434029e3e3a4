"""Process groups from torchrun or SLURM (srun) environments; NCCL on GPUs, gloo on CPU; small collectives; the
network inside its DDP / torch.compile wrappers (`unwrap`).

Here, below engine/ and eval/, because training, evaluation, extraction and the entry points all use it (it was
mvit_video.engine.distributed, which still works for one release)."""

from __future__ import annotations

import datetime
import logging
import os
import re
import subprocess
import zlib
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mvit_video.utils.errors import ConfigError

logger = logging.getLogger(__name__)


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM node list ('gpu[01-03,07],cpu5') into host names, as `scontrol show hostnames` does."""
    hosts: list[str] = []
    # Split on commas that are not inside brackets.
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist):
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not m:
            hosts.append(part)
            continue
        prefix, ranges, suffix = m.groups()
        for r in ranges.split(","):
            if "-" in r:
                lo, hi = r.split("-")
                hosts.extend(f"{prefix}{i:0{len(lo)}d}{suffix}" for i in range(int(lo), int(hi) + 1))
            else:
                hosts.append(f"{prefix}{r}{suffix}")
    return hosts


def _slurm_master_addr(nodelist: str) -> str:
    """First host of the job: `scontrol show hostnames` when available, else our own parser."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return expand_nodelist(nodelist)[0]


def _submitit_ranks() -> tuple[int, int, int, int]:
    """Ranks of a submitit task (hydra/launcher=submitit_*, several tasks_per_node) from its JobEnvironment; sets
    MASTER_ADDR/MASTER_PORT and RANK/WORLD_SIZE/LOCAL_RANK for env:// init. Raises when they cannot be read."""
    env = os.environ
    try:
        import submitit

        job = submitit.JobEnvironment()
        rank, world, local_rank, nodes = job.global_rank, job.num_tasks, job.local_rank, job.num_nodes
        master = "127.0.0.1" if job.cluster in ("local", "debug") else job.hostnames[0]
        job_id = str(job.job_id)
    except Exception as e:  # noqa: BLE001 -- any failure here means we cannot know our rank: refuse to guess
        raise ConfigError(f"hydra.launcher.tasks_per_node: cannot read this task's rank from submitit ({e}); "
                          f"run one task per job, or launch with torchrun/srun") from None
    if world > 1:
        # Set, not defaulted: values inherited from the launching shell (another job's) would point elsewhere.
        env["MASTER_ADDR"] = master
        # A port derived from the job id: every task of the job computes the same one, other jobs another.
        env["MASTER_PORT"] = str(20000 + zlib.crc32(job_id.encode()) % 20000)
        env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"] = str(rank), str(world), str(local_rank)
        env["LOCAL_WORLD_SIZE"] = str(max(1, world // max(1, nodes)))
    return rank, world, local_rank, nodes


def env_ranks() -> tuple[int, int, int, int]:
    """(rank, world_size, local_rank, num_nodes) from torchrun's, submitit's or SLURM's variables; (0, 1, 0, 1)
    otherwise.

    Under SLURM or submitit it also sets MASTER_ADDR/MASTER_PORT (from the node list and the job id) for env://."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun (also torchrun inside an sbatch script)
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", 0))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
        return rank, world, local_rank, max(1, world // max(1, local_world))
    if "SUBMITIT_EXECUTOR" in env:  # a task of hydra's submitit launcher (local or SLURM)
        return _submitit_ranks()
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:  # srun, one task per GPU
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local_rank = int(env.get("SLURM_LOCALID", 0))
        nodes = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", 1)))
        env.setdefault("MASTER_ADDR", _slurm_master_addr(env.get("SLURM_STEP_NODELIST", env["SLURM_NODELIST"])))
        # A port derived from the job id: jobs sharing a node do not collide, every task computes the same one.
        env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"] = str(rank), str(world), str(local_rank)
        return rank, world, local_rank, nodes
    return 0, 1, 0, 1


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
