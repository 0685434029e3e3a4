"""Stop signals (engine/preempt.py): every preemption path saves the mid-epoch position, then requeues -- plain runs
(SIGUSR2 as submitit sends it), train.sbatch (SIGUSR1, `scontrol requeue`), submitit's own handler and launcher --
and a run inside a long step still ends within train.stop_grace_s, at once on a second signal."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest
from tiny import tiny_overrides, wait_for_text

from mvit_video.engine.runlock import LOCK_NAME

PREEMPT = Path("checkpoints") / "checkpoint_preempt.pyth"


def _start(args: list[str], cwd: Path, env: dict | None = None, module: str = "mvit_video.train") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@contextlib.contextmanager
def _running(args: list[str], cwd: Path, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """A training run in its own process group (`_start`), SIGKILLed with its group if the test leaves it running."""
    proc = _start(args, cwd, env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _resumed_at(log: str) -> tuple[str, ...]:
    """What the rerun may log as its resume point, from the first run's save line: mid-epoch ("at epoch E,
    iteration I/N": epoch E-1 done, I batches of the next), or at an epoch's end ("after epoch E"), where the epoch's
    own checkpoint holds the same position and may be the one taken."""
    saved = log.split("checkpoint_preempt.pyth ", 1)[1].split("\n", 1)[0]
    if saved.startswith("at epoch "):
        epoch, rest = saved[len("at epoch "):].split(", iteration ")
        done, per_epoch = (int(x) for x in rest.split()[0].split("/"))
        # the resume line counts iterations from the start of training
        global_iteration = (int(epoch) - 1) * per_epoch + done
        return (f"checkpoint_preempt.pyth (epoch {int(epoch) - 1}, iteration {global_iteration})",)
    epoch = int(saved[len("after epoch "):].split()[0])
    return (f"checkpoint_preempt.pyth (epoch {epoch}, iteration 0)", f"checkpoint_epoch_{epoch:05d}.pyth (epoch {epoch}, ")


def _finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the process did not exit") from None


def _alive(pid: str) -> bool:
    """A running process (a zombie, dead but not yet reaped by whoever inherited it, does not count)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


# ------------------------------------------------------------------------------------------- the handler itself


def test_the_handler_catches_submitits_preemption_signal(monkeypatch) -> None:
    from mvit_video.engine.loop import PreemptionHandler as FromLoop  # the old import path keeps working
    from mvit_video.engine.preempt import PreemptionHandler, submitit_signal

    assert FromLoop is PreemptionHandler
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    handler = PreemptionHandler().install()
    try:
        assert {signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT} <= set(handler.signals())
        assert submitit_signal() in handler.signals()
        os.kill(os.getpid(), signal.SIGUSR2)  # submitit's default: before, this killed the process (rc 140)
        deadline = time.time() + 5
        while handler.signum is None and time.time() < deadline:
            time.sleep(0.01)
        assert handler.signum == signal.SIGUSR2
        with pytest.raises(SystemExit) as e:
            handler.exit()
        assert e.value.code == 128 + signal.SIGUSR2
    finally:
        handler.restore()
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1  # the watcher's wakeup fd is gone too


def test_after_the_checkpoint_submitits_own_handler_requeues(tmp_path: Path, monkeypatch) -> None:
    """submitit's handler, installed as submitit installs it in a job, runs only after our checkpoint: it pickles
    the job for the requeue and exits with LocalJobEnvironment's requeue status."""
    import submitit
    from submitit.core.utils import DelayedSubmission, JobPaths
    from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE, LocalJobEnvironment

    from mvit_video.engine.preempt import PreemptionHandler

    for key, value in {"SUBMITIT_LOCAL_JOB_ID": "4242", "SUBMITIT_LOCAL_NTASKS": "1",
                       "SUBMITIT_LOCAL_JOB_NUM_NODES": "1", "SUBMITIT_LOCAL_NODEID": "0",
                       "SUBMITIT_LOCAL_GLOBALID": "0", "SUBMITIT_LOCAL_LOCALID": "0"}.items():
        monkeypatch.setenv(key, value)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR2)}
    paths = JobPaths(tmp_path, job_id="4242")
    paths.folder.mkdir(parents=True, exist_ok=True)
    delayed = DelayedSubmission(submitit.helpers.FunctionSequence())  # checkpointable, as Hydra's launcher
    delayed.set_timeout(60, 3)
    LocalJobEnvironment()._handle_signals(paths, delayed)
    try:
        handler = PreemptionHandler().install()
        os.kill(os.getpid(), LocalJobEnvironment._usr_sig())
        deadline = time.time() + 5
        while handler.signum is None and time.time() < deadline:
            time.sleep(0.01)
        assert handler.signum == LocalJobEnvironment._usr_sig()
        assert not paths.submitted_pickle.exists()  # nothing handed over yet: the loop saves first
        with pytest.raises(SystemExit) as e:
            handler.exit()
        assert e.value.code == LOCAL_REQUEUE_RETURN_CODE
        assert paths.submitted_pickle.is_file()  # submitit's checkpoint of the job, for its requeue
        handler.restore()
    finally:
        for s, h in before.items():
            signal.signal(s, h)


@pytest.mark.parametrize("sig, code, requeued", [(signal.SIGTERM, 143, False), (signal.SIGUSR1, 0, True),
                                                 (signal.SIGUSR2, 0, True), (signal.SIGINT, 130, False)])
def test_under_slurm_only_preemption_signals_requeue(tmp_path: Path, monkeypatch, sig, code, requeued) -> None:
    """After the checkpoint, under SLURM: train.sbatch's USR1 and submitit's USR2 ask `scontrol requeue` (exit 0);
    SIGTERM (scancel: a cancelled job stays cancelled) and Ctrl-C exit 128 + signal without asking."""
    from mvit_video.engine.preempt import PreemptionHandler

    record = tmp_path / "scontrol.args"
    (tmp_path / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {record}\n")
    (tmp_path / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    handler = PreemptionHandler().install()
    try:
        handler.signum = sig  # as the handler sets it when the signal comes
        with pytest.raises(SystemExit) as e:
            handler.exit()
    finally:
        handler.restore()
    assert e.value.code == code
    assert record.is_file() == requeued and (not requeued or record.read_text().split() == ["requeue", "777"])


def test_outside_slurm_a_preemption_signal_exits_128_plus_its_number(monkeypatch) -> None:
    from mvit_video.engine.preempt import PreemptionHandler

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    for sig, code in ((signal.SIGUSR1, 138), (signal.SIGUSR2, 140), (signal.SIGTERM, 143)):
        handler = PreemptionHandler().install()
        try:
            handler.signum = sig
            with pytest.raises(SystemExit) as e:
                handler.exit()
        finally:
            handler.restore()
        assert e.value.code == code


# ------------------------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_usr2_on_a_plain_run_saves_mid_epoch_and_the_rerun_continues_there(kinetics_list_dir, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # three epochs: on a loaded machine the log is read late, and a signal in the last epoch saves no preempt file
    args = tiny_overrides(kinetics_list_dir, out, "train.batch_size=1", "solver.max_epoch=3")
    with _running(args, tmp_path) as proc:
        wait_for_text(out / "train.log", "iter 2/4", proc)
        os.kill(proc.pid, signal.SIGUSR2)
        output = _finish(proc)
    assert proc.returncode == 128 + signal.SIGUSR2, output[-3000:]
    log = (out / "train.log").read_text()
    assert f"signal {int(signal.SIGUSR2)}: saving" in log and (out / PREEMPT).is_file()
    assert not (out / LOCK_NAME).exists()
    rerun = _start(args, tmp_path)
    output = _finish(rerun, timeout=240)
    assert rerun.returncode == 0, output[-3000:]
    assert any(point in (out / "train.log").read_text() for point in _resumed_at(log))


@pytest.mark.slow
def test_sbatch_path_usr1_saves_then_asks_slurm_to_requeue(kinetics_list_dir, tmp_path: Path) -> None:
    """As under scripts/slurm/train.sbatch: SLURM_JOB_ID set, SIGUSR1; `scontrol` is a recording stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "scontrol.args"
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {record}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "777"}
    out = tmp_path / "run"
    # three epochs: on a loaded machine the log can be read late, and a signal in the last epoch saves no preempt file
    args = tiny_overrides(kinetics_list_dir, out, "train.batch_size=1", "solver.max_epoch=3")
    with _running(args, tmp_path, env) as proc:
        wait_for_text(out / "train.log", "iter 2/4", proc)
        os.kill(proc.pid, signal.SIGUSR1)
        output = _finish(proc)
    assert proc.returncode == 0, output[-3000:]  # requeued: SLURM restarts the job
    assert (out / PREEMPT).is_file() and record.read_text().split() == ["requeue", "777"]
    log = (out / "train.log").read_text()
    assert log.index("saving") < log.index("requeued SLURM job 777")  # checkpoint first, then requeue


@pytest.mark.slow
def test_submitit_launcher_preemption_saves_requeues_and_continues_at_that_batch(kinetics_list_dir,
                                                                                   tmp_path: Path) -> None:
    """hydra/launcher=submitit_local (submitit's LocalExecutor, the mvit_slurm launcher's code path off a
    cluster): the task gets submitit's preemption signal mid-epoch, saves, submitit requeues it (its controller
    restarts the task) and the requeued task resumes at the saved batch."""
    out = tmp_path / "run"
    args = ["-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            *tiny_overrides(kinetics_list_dir, out, "train.batch_size=1", "solver.max_epoch=3")]
    with _running(args, tmp_path) as proc:
        deadline = time.time() + 300
        # one job, nothing swept: it writes to output_dir itself (a sweep's jobs would be in folders under it)
        while not list(out.glob("**/train.log")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        out = next(out.glob("**/train.log")).parent
        wait_for_text(out / "train.log", "iter 2/4", proc, timeout=300)
        task_pid = json.loads((out / LOCK_NAME).read_text())["pid"]
        from mvit_video.engine.preempt import submitit_signal

        os.kill(task_pid, submitit_signal())
        output = _finish(proc, timeout=300)
    assert proc.returncode == 0, output[-3000:]
    log = (out / "train.log").read_text()
    assert any(point in log for point in _resumed_at(log)), log[-3000:]
    assert '"split": "train", "epoch": 3' in (out / "metrics.jsonl").read_text()


# A step made long for real: a 384-px crop of 8 frames through the tiny network, batch 2 (about 13 CPU-s per
# step on an AMD EPYC core; 1.2 GB peak).
_BIG_STEP = ["data.train_crop_size=384", "data.num_frames=8", "data.train_jitter_scales=[384,384]",
             "train.batch_size=2", "solver.max_epoch=1", "train.stop_grace_s=2"]


@pytest.mark.slow
def test_sigterm_inside_a_long_step_ends_the_run_within_the_grace_period(kinetics_list_dir, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with _running(tiny_overrides(kinetics_list_dir, out, *_BIG_STEP), tmp_path) as proc:
        wait_for_text(out / "train.log", "iter 1/2", proc, timeout=300)  # the second step has just begun
        t0 = time.time()
        os.kill(proc.pid, signal.SIGTERM)
        output = _finish(proc, timeout=60)
        took = time.time() - t0
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert took < 2 + 5, took  # the grace period and a margin for a loaded machine; the step needs ~13 s
    assert "did not stop within train.stop_grace_s=2 s" in output and "Traceback" not in output
    assert not (out / PREEMPT).exists()  # no time to save: the epoch-start state is what a rerun uses
    assert not (out / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_second_ctrl_c_inside_a_long_step_ends_the_run_at_once_with_130(kinetics_list_dir, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with _running(tiny_overrides(kinetics_list_dir, out, *_BIG_STEP[:-1], "train.stop_grace_s=120",
                                 "data_loader.num_workers=2"), tmp_path) as proc:
        wait_for_text(out / "train.log", "iter 1/2", proc, timeout=300)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # the first Ctrl-C waits for the step
        t0 = time.time()
        os.kill(proc.pid, signal.SIGINT)
        output = _finish(proc, timeout=60)
        took = time.time() - t0
    assert proc.returncode == 130 and took < 5, (proc.returncode, took, output[-3000:])
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert "second stop signal" in output
    time.sleep(0.5)
    assert workers and not [w for w in workers if _alive(w)]  # workers ended too
    assert not (out / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_long_c_op_does_not_hold_off_the_watcher(tmp_path: Path) -> None:
    """The mechanism alone: the main thread inside one long C++ call (matrix_power of a 2000x2000 matrix, about
    16 products), SIGTERM ends the process after the grace period, no Python handler having run."""
    script = textwrap.dedent("""
        import sys, time, torch
        from mvit_video.engine.preempt import PreemptionHandler
        torch.set_num_threads(1)
        h = PreemptionHandler(grace_s=0.5).install()
        a = torch.rand(2000, 2000) / 2000
        print("ready", flush=True)
        torch.linalg.matrix_power(a, 1000)
        print("finished the op", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
        took = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM and "finished the op" not in output, output
    assert took < 0.5 + 3, took


# ------------------------------------------------------------------------------------------- launchers off a cluster


def test_config_handler_and_submitit_agree_on_the_preemption_signal(monkeypatch) -> None:
    import submitit

    from mvit_video.engine.preempt import PreemptionHandler, submitit_signal

    assert getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG) == submitit_signal() == signal.SIGUSR2
    assert submitit_signal() in PreemptionHandler().signals()
    yaml = (Path(__file__).parents[2] / "conf" / "hydra" / "launcher" / "mvit_slurm.yaml").read_text()
    assert "SIGUSR2" in yaml and "SUBMITIT_PREEMPT_SIGNAL" in yaml and "SIGUSR1 signal_delay_s" not in yaml
    sbatch = (Path(__file__).parents[2] / "scripts" / "slurm" / "train.sbatch").read_text()
    assert "#SBATCH --signal=USR1@120" in sbatch and signal.SIGUSR1 in PreemptionHandler().signals()
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")  # read as submitit reads it when it is not imported
    monkeypatch.delitem(sys.modules, "submitit")
    assert submitit_signal() == signal.SIGUSR1


def test_train_sbatch_outside_slurm_says_what_is_missing_in_one_line() -> None:
    script = Path(__file__).parents[2] / "scripts" / "slurm" / "train.sbatch"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(script), "+experiment=k400_b_32x3"], capture_output=True, text=True, env=env,
                          timeout=30)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: scripts/slurm/train.sbatch runs under SLURM (SLURM_JOB_ID is not set): submit it with sbatch, or "
        "train here with python -m mvit_video.train +experiment=k400_b_32x3"]


@pytest.mark.slow
def test_the_slurm_launcher_off_a_cluster_says_what_is_missing_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}  # no srun
    proc = subprocess.run([sys.executable, "-m", "mvit_video.train", "-m", "hydra/launcher=mvit_slurm",
                           f"output_dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "`srun` is not on PATH" in lines[0] and "hydra/launcher=submitit_local" in lines[0]


def test_outside_the_training_loop_a_signal_ends_the_run_at_once(monkeypatch) -> None:
    """Building the run or the final test: nothing to save, so the first signal exits (through SystemExit, so that
    `finally` blocks release the lock and end the workers)."""
    from mvit_video.engine.preempt import PreemptionHandler

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    handler = PreemptionHandler()
    handler.checkpointable = False
    handler.install()
    try:
        with pytest.raises(SystemExit) as e:
            os.kill(os.getpid(), signal.SIGUSR2)
            for _ in range(500):  # the handler runs between these bytecodes
                time.sleep(0.01)
        assert e.value.code == 128 + signal.SIGUSR2
    finally:
        handler.restore()
