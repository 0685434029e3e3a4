"""A run with data workers exits within seconds on any error or signal; one run per output_dir (the run lock)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import tiny_overrides, wait_for_text

from mvit_video.engine.runlock import LOCK_NAME, RunLock
from mvit_video.utils.errors import UserError

_INJECT = """
import sys, time
from mvit_video.config import compose
from mvit_video.train import train

def boom(epoch, iteration):
    if iteration == 2:
        print("raising at", time.time(), flush=True)
        raise KeyError("injected failure")

train(compose(sys.argv[1:]), on_step=boom)
"""


@pytest.mark.slow
def test_an_error_inside_an_epoch_with_two_workers_exits_within_seconds(kinetics_list_dir, tmp_path: Path) -> None:
    """Before: the traceback kept the loader alive, exit SIGTERMed workers that ignore it, and waited forever."""
    args = tiny_overrides(kinetics_list_dir, tmp_path / "run", "data_loader.num_workers=2", "train.batch_size=1")
    proc = subprocess.Popen([sys.executable, "-c", _INJECT, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=90)  # startup (imports) included; the exit itself takes seconds
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the process did not exit after the error") from None
    exited = time.time()
    assert proc.returncode == 1 and "KeyError: 'injected failure'" in output
    raised = float(output.split("raising at ")[1].split()[0])
    assert exited - raised < 30
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # released on the way out


@pytest.mark.slow
def test_kill_int_ends_the_run_and_its_workers(kinetics_list_dir, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = tiny_overrides(kinetics_list_dir, out, "data_loader.num_workers=2", "train.batch_size=1",
                          "solver.max_epoch=50")
    # SIGINT's default action back (a shell starts background jobs with SIGINT ignored)
    proc = subprocess.Popen([sys.executable, "-m", "mvit_video.train", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_text(out / "train.log", "iter 2/4", proc)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) >= 2
        t0 = time.time()
        os.kill(proc.pid, signal.SIGINT)  # the main process only, as `kill -INT <pid>`
        output, _ = proc.communicate(timeout=30)
        # Ctrl-C is a stop like a preemption: the step ends, the position is saved, exit 128 + SIGINT
        assert time.time() - t0 < 30 and proc.returncode == 130, output[-3000:]
        assert (out / "checkpoints" / "checkpoint_preempt.pyth").is_file()
        time.sleep(0.5)
        assert not [w for w in workers if Path(f"/proc/{w}").exists()]  # no orphan worker left
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_second_run_on_a_live_output_dir_is_refused(tiny, tmp_path: Path) -> None:
    cfg = tiny("live")
    out = Path(cfg.output_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mvit_video.engine.runlock import RunLock; "
         "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        from mvit_video.train import train

        with pytest.raises(UserError, match=f"in use by another run \\(pid {holder.pid} on host "
                                            f"{socket.gethostname()}") as e:
            train(cfg)
        assert "\n" not in str(e.value)
        assert not (out / "checkpoints").exists() and not (out / "train.log").exists()  # nothing touched
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing (SIGKILL): the lock is stale, the next run takes it over and trains.
    train(tiny("live", "solver.max_epoch=1", "solver.warmup_epochs=0"))
    assert (out / "checkpoints" / "checkpoint_epoch_00001.pyth").is_file() and not (out / LOCK_NAME).exists()


def _write_lock(d: Path, mtime_age: float = 0.0, **holder) -> None:
    d.mkdir(parents=True, exist_ok=True)
    info = {"host": "other-node", "pid": 12345, "slurm_job_id": None, "started": time.time(), "token": "x"}
    info.update(holder)
    (d / LOCK_NAME).write_text(json.dumps(info))
    t = time.time() - mtime_age
    os.utime(d / LOCK_NAME, (t, t))


@pytest.mark.slow
def test_lock_staleness_on_shared_filesystems(tmp_path: Path, monkeypatch) -> None:
    # Another host with a fresh heartbeat: alive as far as we can tell.
    _write_lock(tmp_path / "a")
    with pytest.raises(UserError, match="pid 12345 on host other-node"):
        RunLock(tmp_path / "a").acquire()
    # Another host whose heartbeat stopped: its holder is gone.
    _write_lock(tmp_path / "b", mtime_age=3600)
    RunLock(tmp_path / "b").acquire().release()
    # This host, a pid that no longer runs.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path / "c", host=socket.gethostname(), pid=dead.pid)
    lock = RunLock(tmp_path / "c").acquire()
    assert json.loads((tmp_path / "c" / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / "c" / LOCK_NAME).exists()
    # A requeued SLURM job (same job id, possibly another node) takes over its own lock.
    _write_lock(tmp_path / "d", slurm_job_id="4242")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    RunLock(tmp_path / "d").acquire().release()
    # The heartbeat keeps a live lock fresh.
    lock = RunLock(tmp_path / "e", heartbeat_s=0.05)
    (tmp_path / "e").mkdir()
    lock.acquire()
    old = time.time() - 100
    os.utime(lock.path, (old, old))
    time.sleep(0.3)
    assert time.time() - lock.path.stat().st_mtime < 5
    lock.release()


@pytest.mark.slow
def test_output_dir_that_is_a_file_is_refused_before_training(tiny, tmp_path: Path) -> None:
    from mvit_video.train import train
    from mvit_video.utils.errors import ConfigError

    (tmp_path / "taken").write_text("not a directory")
    with pytest.raises(ConfigError, match="'output_dir'.*is a file"):
        train(tiny("taken"))
    with pytest.raises(ConfigError, match="'output_dir'.*below a file"):
        train(tiny("taken/sub"))
