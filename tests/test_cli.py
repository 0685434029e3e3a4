"""`python -m mvit_video.train` as users run it: one-line errors, Hydra's own flags, preemption by a real signal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_overrides, wait_for_text


def _train(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvit_video.train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, **kw)


@pytest.mark.parametrize(
    "args, message",
    [
        (["data.nope=1"], "error: unknown config key 'data.nope'"),
        (["-m", "solver.base_lr=1e-3,1e-4", "data.nope=1", "hydra/launcher=mvit_slurm"],
         "error: unknown config key 'data.nope'"),
        (["solver.optimizing_method=adam"], "error: config key 'solver.optimizing_method': expected one of adamw, sgd"),
        (["+experiment=k400_b_32x3"], "error: config key 'data.path_to_data_dir' is empty"),
    ],
)
@pytest.mark.slow
def test_user_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    r = _train(args, tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().startswith(message), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "outputs").exists()  # nothing started


@pytest.mark.slow
def test_hydra_flags_show_presets_and_the_slurm_launcher(tmp_path: Path) -> None:
    r = _train(["--cfg", "job", "+experiment=k400_b_32x3"], tmp_path)
    assert r.returncode == 0 and "name: k400_b_32x3" in r.stdout and "num_frames: 32" in r.stdout
    r = _train(["hydra/launcher=mvit_slurm", "hydra.launcher.nodes=4", "--cfg", "hydra", "-p", "hydra.launcher"],
               tmp_path)
    assert r.returncode == 0, r.stderr
    assert "SlurmLauncher" in r.stdout and "gpus_per_node: 8" in r.stdout and "nodes: 4" in r.stdout


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_and_the_rerun_resumes(kinetics_list_dir, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = tiny_overrides(kinetics_list_dir, out, "train.batch_size=1", "data_loader.num_workers=1",
                          "data_loader.persistent_workers=false", "solver.max_epoch=20", "train.eval_period=100",
                          "train.checkpoint_period=100")  # 80 iterations: the signal lands mid-training
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mvit_video.train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = out / "train.log"
    wait_for_text(log, "iter 1/4", proc)
    # As SLURM does: the signal goes to every process of the step, data-loader workers included.
    os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=200)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert (out / "checkpoints" / "checkpoint_preempt.pyth").is_file(), output
    assert "signal 15: saving" in log.read_text() and "Traceback" not in output

    r = _train(args, tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    assert "Resuming from" in text and "checkpoint_preempt.pyth (epoch " in text
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint_[ep]*")) == ["checkpoint_epoch_00020.pyth"]


@pytest.mark.slow
def test_multirun_gives_each_job_its_own_output_dir(kinetics_list_dir, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = tiny_overrides(kinetics_list_dir, out, "solver.max_epoch=1", "solver.warmup_epochs=0")
    r = _train(["-m", *args, "solver.base_lr=1e-3,2e-3"], tmp_path)
    assert r.returncode == 0, r.stderr
    jobs = sorted(p.parent.parent for p in out.glob("*/checkpoints/checkpoint_epoch_00001.pyth"))
    assert [p.name for p in jobs] == ["base_lr=0.001", "base_lr=0.002"]  # named by the swept key only
    assert ["base_lr: 0.001" in (j / "config.yaml").read_text() for j in jobs] == [True, False]
    # The same sweep again (a re-run, a requeue): each job resumes in its own folder; the index gains no lines
    index = (out / "sweep.jsonl").read_text()
    assert len(index.splitlines()) == 2
    r = _train(["-m", *args, "solver.base_lr=1e-3,2e-3"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (out / "sweep.jsonl").read_text() == index
    assert all("training already finished (1 epochs)" in (j / "train.log").read_text() for j in jobs)


@pytest.mark.slow
def test_submitit_tasks_form_one_process_group(kinetics_list_dir, tmp_path: Path) -> None:
    """hydra.launcher.tasks_per_node=2: the two tasks take their ranks from submitit and train as one 2-process run
    (before: two 1-process runs in one directory); no empty `0/` or literal `.submitit/%j/` is left behind."""
    out = tmp_path / "sweep"
    args = tiny_overrides(kinetics_list_dir, out, "solver.max_epoch=1", "solver.warmup_epochs=0")
    r = _train(["-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", *args], tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"multirun: each job writes to {out} " in r.stderr  # nothing swept: output_dir itself
    runs = [p.parent for p in out.glob("**/train.log")]  # nothing swept: the job writes to output_dir itself
    assert len(runs) == 1
    log = (runs[0] / "train.log").read_text()
    assert "(2 processes on cpu)" in log and log.count("epoch 1/1: train loss") == 1
    assert [json.loads(x)["split"] for x in (runs[0] / "metrics.jsonl").read_text().splitlines()] == ["train", "val"]
    assert not (out / "0").exists() and not (out / ".submitit" / "%j").exists()


@pytest.mark.slow
def test_torchrun_two_processes_with_default_workers_stops_on_sigterm_and_the_rerun_resumes(kinetics_list_dir,
                                                                                           video_dir: Path,
                                                                                           tmp_path: Path) -> None:
    """As the README runs it: `torchrun --nproc_per_node 2 -m mvit_video.train`, the default 2 persistent workers per
    process, a training list with an undecodable video; `kill` (SIGTERM) to torchrun mid-training saves the
    preemption checkpoint on every rank's behalf, and the same command again resumes there and finishes with the
    weights of an unbroken run, bit for bit; the bad video is listed once in bad_videos.txt, whichever rank met it."""
    lists = tmp_path / "lists"
    shutil.copytree(kinetics_list_dir, lists)
    with open(lists / "train.csv", "a") as f:
        f.write(f"{video_dir / 'garbage.mp4'} 1\n")  # replaced by another sample, chosen from seed, epoch, index

    def command(out: Path) -> list[str]:
        args = tiny_overrides(lists, out, "train.batch_size=2", "data_loader.num_workers=2",
                              "solver.max_epoch=20", "train.eval_period=100", "train.checkpoint_period=100")
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "mvit_video.train", *args]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(command(tmp_path / "unbroken"), cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "run"
    command = command(out)
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    log = out / "train.log"
    try:
        wait_for_text(log, "iter 1/2", proc)
        proc.send_signal(signal.SIGTERM)  # to torchrun alone, as `kill` does: it passes the signal on to the ranks
        output, _ = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # Every rank saved and exited 143; torchrun reports that as a failure of its own (torch's SignalException, 1)
    assert proc.returncode == 1 and "got signal: 15" in output, output[-3000:]
    assert (out / "checkpoints" / "checkpoint_preempt.pyth").is_file(), output[-3000:]
    assert "signal 15: saving" in log.read_text()
    r = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = log.read_text()
    assert "Resuming from" in text and "checkpoint_preempt.pyth (epoch " in text and "(2 processes on cpu)" in text
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint_[ep]*")) == ["checkpoint_epoch_00020.pyth"]
    want, got = (torch.load(d / "checkpoints" / "checkpoint_epoch_00020.pyth", weights_only=True)["model"]
                 for d in (tmp_path / "unbroken", out))
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    for run in (tmp_path / "unbroken", out):
        assert (run / "bad_videos.txt").read_text().splitlines() == [str(video_dir / "garbage.mp4")]
