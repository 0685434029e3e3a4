"""Runs that never share files: train.auto_resume=false moves the old run aside (nothing of it can be resumed or
evaluated by default), a requeued job keeps its own; checkpoint retention and the best checkpoint together with
resume; bad_videos.txt lists each path once across resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mvit_video import checkpoint as ck
from mvit_video.engine.resume import PREVIOUS, fresh_start, move_previous_run
from mvit_video.engine.trainer import report_bad_videos
from mvit_video.train import train


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _epoch_names(out: Path) -> list[str]:
    return [p.name for _, p in ck.epoch_checkpoints(out)]


@pytest.mark.slow
def test_fresh_start_leaves_nothing_of_the_old_run_to_resume_or_evaluate(tiny, caplog) -> None:
    """Before: the old run's checkpoint_epoch_00002 stayed beside the new run's epoch 1, so evaluate tested the
    old model and the next plain re-run resumed the old run (whose test line stayed in metrics.jsonl)."""
    train(tiny("run", "test.enable=true"))
    out = Path(tiny("run").output_dir)
    old_final = ck.load(ck.epoch_checkpoint_path(out, 2))["model"]
    (test_line,) = [m for m in _metrics(out) if m["split"] == "test"]
    # the run's own test line names the tested checkpoint and its epoch
    assert test_line["checkpoint"] == str(ck.epoch_checkpoint_path(out, 2)) and test_line["epoch"] == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in (out / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        points += [(e.step, e.value) for e in acc.Scalars("test/top1")] if "test/top1" in acc.Tags()["scalars"] else []
    assert points == [(2, pytest.approx(test_line["top1"]))]  # at the tested checkpoint's epoch

    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("run", "train.auto_resume=false", "solver.max_epoch=1", "train.save_best=false"))
    assert "train.auto_resume=false: starting a fresh run" in caplog.text and "Resuming" not in caplog.text
    (previous,) = (out / PREVIOUS).iterdir()
    assert f"moved to {previous}" in caplog.text
    # the old run, whole, in previous/<UTC time>/
    assert _epoch_names(previous) == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    assert (previous / "checkpoints" / ck.BEST_NAME).is_file()
    assert [m["split"] for m in _metrics(previous)][-1] == "test"
    assert {"config.yaml", "train.log", "tensorboard", "predictions.jsonl"} <= {p.name for p in previous.iterdir()}
    # the new run alone in output_dir: one epoch, its own metrics, no test line of the old run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint_epoch_00001.pyth"]
    assert [(m["split"], m["epoch"]) for m in _metrics(out)] == [("train", 1), ("val", 1)]
    assert not (out / "predictions.jsonl").exists()
    assert "solver.max_epoch=1" not in (previous / "train.log").read_text()  # the old log moved whole
    # evaluate's default and the next plain re-run both find the new run's checkpoint
    assert ck.latest_checkpoint(out) == ck.epoch_checkpoint_path(out, 1)
    new = ck.load(ck.epoch_checkpoint_path(out, 1))["model"]
    assert any(not torch.equal(new[k], old_final[k]) for k in new)
    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("run", "solver.max_epoch=1", "train.save_best=false"))
    assert f"Resuming from {ck.epoch_checkpoint_path(out, 1)} (epoch 1" in caplog.text


def test_fresh_start_moves_only_run_files_and_keeps_a_requeued_run(tmp_path, monkeypatch) -> None:
    from mvit_video.config import build_config, compose

    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint_epoch_00001.pyth").write_bytes(b"x")
    (out / "metrics.jsonl").write_text("{}\n")
    (out / "bad_videos.txt").write_text("a.mp4\n")
    (out / "notes.txt").write_text("the user's own file")  # output_dir may hold other things: they stay
    run = build_config(compose([f"output_dir={out}", "train.auto_resume=false"]))

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a requeued job: its files are its own, they stay
    note = fresh_start(run, out)
    assert "SLURM requeue #1" in note and (out / "checkpoints").is_dir() and not (out / PREVIOUS).exists()

    monkeypatch.delenv("SLURM_RESTART_COUNT")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")  # torchrun --max-restarts restarted the processes
    note = fresh_start(run, out)
    assert "torchrun restart #2" in note and (out / "checkpoints").is_dir() and not (out / PREVIOUS).exists()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")  # torchrun's first start: not a restart
    note = fresh_start(run, out)
    (dest,) = (out / PREVIOUS).iterdir()
    assert note.endswith(f"moved to {dest}")
    assert sorted(p.name for p in dest.iterdir()) == ["bad_videos.txt", "checkpoints", "metrics.jsonl"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", PREVIOUS]
    assert fresh_start(run, out) is None and move_previous_run(out) is None  # nothing left to move
    resumed = build_config(compose([f"output_dir={out}"]))
    assert fresh_start(resumed, out) is None  # auto_resume=true never moves anything


@pytest.mark.slow
def test_retention_and_best_checkpoint_with_resume(tiny, caplog) -> None:
    """keep_checkpoints=2 over 4 epochs with a kill in epoch 3: resume takes the latest, retention keeps the two
    latest epochs, checkpoint_best.pyth holds the best val epoch and `evaluate test.checkpoint=best` tests it."""
    from omegaconf import open_dict

    from mvit_video.evaluate import run as evaluate

    extra = ("train.keep_checkpoints=2", "solver.max_epoch=4", "solver.warmup_epochs=0")

    def die_in_epoch_3(epoch: int, iteration: int) -> None:
        if (epoch, iteration) == (2, 1):
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train(tiny("keep", *extra), on_step=die_in_epoch_3)
    out = Path(tiny("keep").output_dir)
    assert _epoch_names(out) == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("keep", *extra))
    assert f"Resuming from {ck.epoch_checkpoint_path(out, 2)} (epoch 2" in caplog.text
    assert _epoch_names(out) == ["checkpoint_epoch_00003.pyth", "checkpoint_epoch_00004.pyth"]
    assert "train.keep_checkpoints=2: removed checkpoint_epoch_00001.pyth" in caplog.text

    vals = [m for m in _metrics(out) if m["split"] == "val"]
    assert [m["epoch"] for m in vals] == [1, 2, 3, 4]
    best_epoch = max(vals, key=lambda m: (m["top1"], -m["epoch"]))["epoch"]  # the first epoch of the best top-1
    best = ck.load(ck.best_checkpoint_path(out))
    assert best["epoch"] == best_epoch
    same_epoch = ck.epoch_checkpoint_path(out, best_epoch)
    if same_epoch.exists():  # the best epoch's checkpoint is kept: the best is the same file (a hard link)
        assert same_epoch.stat().st_ino == ck.best_checkpoint_path(out).stat().st_ino

    # a re-run resumes the latest (epoch 4), never the best
    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("keep", *extra))
    assert f"Resuming from {ck.epoch_checkpoint_path(out, 4)}" in caplog.text

    cfg = tiny("keep", *extra, "test.checkpoint=best")
    with open_dict(cfg):
        cfg.test.split = "val"
    report = evaluate(cfg)
    assert report["checkpoint"] == str(ck.best_checkpoint_path(out)) and report["epoch"] == best_epoch
    assert report["top1"] == pytest.approx(next(m["top1"] for m in vals if m["epoch"] == best_epoch))


def test_bad_videos_listed_once_across_resumes(tmp_path) -> None:
    listed = tmp_path / "bad_videos.txt"
    report_bad_videos(["a.mp4", "b.mp4", "a.mp4"], set(), tmp_path, epoch=0)
    # a resumed run starts with an empty memory of what it saw: the file is what it knows
    report_bad_videos(["b.mp4", "c.mp4"], set(), tmp_path, epoch=1)
    assert listed.read_text().splitlines() == ["a.mp4", "b.mp4", "c.mp4"]
