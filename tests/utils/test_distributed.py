"""Rank discovery from torchrun/SLURM variables and SLURM node-list parsing."""

from __future__ import annotations

import pytest

from mvit_video.utils import distributed as du


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("node1", ["node1"]),
        ("gpu[01-03]", ["gpu01", "gpu02", "gpu03"]),
        ("gpu[01-02,07],cpu5", ["gpu01", "gpu02", "gpu07", "cpu5"]),
        ("a[8-10]-ib", ["a8-ib", "a9-ib", "a10-ib"]),
    ],
)
def test_expand_nodelist(nodelist: str, hosts: list[str]) -> None:
    assert du.expand_nodelist(nodelist) == hosts


def _clear(monkeypatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NODELIST", "SLURM_STEP_NODELIST",
                "SLURM_JOB_NUM_NODES", "SLURM_NNODES", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)


def test_env_ranks_single_torchrun_and_slurm(monkeypatch) -> None:
    _clear(monkeypatch)
    assert du.env_ranks() == (0, 1, 0, 1)
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert du.env_ranks() == (5, 16, 1, 2)

    _clear(monkeypatch)
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol: the node list is parsed by us
    for var, value in {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
                       "SLURM_NODELIST": "gpu[07-08]", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_ID": "4242"}.items():
        monkeypatch.setenv(var, value)
    assert du.env_ranks() == (9, 16, 1, 2)
    import os

    assert os.environ["MASTER_ADDR"] == "gpu07" and os.environ["MASTER_PORT"] == str(20000 + 4242)
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("9", "16", "1")


def test_single_process_collectives_are_identity() -> None:
    assert du.all_gather_object({"a": 1}) == [{"a": 1}]
    assert du.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]
    assert not du.broadcast_flag(False) and du.broadcast_flag(True)
    assert du.is_main() and du.get_world_size() == 1


def test_submitit_tasks_take_their_ranks_from_the_job_environment(monkeypatch) -> None:
    import os

    from mvit_video.utils.errors import ConfigError

    _clear(monkeypatch)
    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.setenv(var, "stale")  # recorded, so the values env_ranks writes are undone after the test
        monkeypatch.delenv(var)
    monkeypatch.setenv("MASTER_ADDR", "gpu07")  # inherited from the launching shell: must not be used
    for var, value in {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1",
                       "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_JOB_ID": "77",
                       "SUBMITIT_LOCAL_JOB_NUM_NODES": "1"}.items():
        monkeypatch.setenv(var, value)
    assert du.env_ranks() == (1, 2, 1, 1)
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and (os.environ["RANK"], os.environ["WORLD_SIZE"]) == ("1", "2")
    port = os.environ["MASTER_PORT"]
    assert du.env_ranks() == (1, 2, 1, 1) and os.environ["MASTER_PORT"] == port  # stable within the job
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "unknown")
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var)
    with pytest.raises(ConfigError, match="hydra.launcher.tasks_per_node: cannot read this task's rank"):
        du.env_ranks()


def test_old_import_path_still_works_with_a_deprecation_warning() -> None:
    """mvit_video.engine.distributed moved to mvit_video.utils.distributed (#22): the old path keeps working."""
    import importlib

    old = importlib.import_module("mvit_video.engine.distributed")
    with pytest.warns(DeprecationWarning, match="use mvit_video.utils.distributed.env_ranks"):
        assert old.env_ranks is du.env_ranks
    with pytest.raises(AttributeError):
        old.no_such_helper  # noqa: B018 -- a name that never was there is not a moved one
