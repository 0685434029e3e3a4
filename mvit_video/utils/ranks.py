"""This process's rank from the launcher's environment (torchrun, hydra's submitit launcher, SLURM's srun).

Torch-free, so that a command reads its ranks and checks its whole configuration before it imports torch: a wrong
value is one line in a fraction of a second, not after seconds of imports."""

from __future__ import annotations

import os
import re
import subprocess
import zlib

from mvit_video.utils.errors import ConfigError


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
