"""evaluate end to end on real tiny videos: 2-process gloo run (one prediction per video), the CLI and its reports;
validation and the test score alike (eval.testing); which checkpoint is tested."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mvit_video.config import build_config, compose
from mvit_video.utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def recount_top1(predictions: list[dict]) -> float:
    return 100.0 * sum(p["topk"][0][0] == p["label"] for p in predictions) / len(predictions)


@pytest.mark.slow
def test_two_processes_one_prediction_per_video(tmp_path, eval_data, eval_overrides, tiny_checkpoint):
    """`torchrun --nproc_per_node 2 -m mvit_video.evaluate`, as users run it: a list of 5 videos (not divisible by 2)
    gives each video exactly one prediction, gathered to rank 0, which alone writes and prints; the predictions are
    those of one process."""
    from mvit_video.checkpoint import load_model
    from mvit_video.eval.reports import eval_dir
    from mvit_video.eval.testing import test

    single = tmp_path / "single"  # reference: one process
    test(build_config(compose(eval_overrides + [f"output_dir={single}"])), load_model(tiny_checkpoint), None,
         count_flops=False)

    multi = tmp_path / "multi"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mvit_video.evaluate", *eval_overrides, f"test.checkpoint={tiny_checkpoint}", f"output_dir={multi}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = eval_dir(multi, tiny_checkpoint)
    assert proc.stdout.count(f"appended to {records / 'metrics.jsonl'}") == 1  # rank 0 alone prints its summary
    preds = read_jsonl(records / "predictions.jsonl")
    listed = [line.split()[0] for line in (eval_data / "test.csv").read_text().splitlines()]
    assert sorted(p["video"] for p in preds) == sorted(listed)  # every video exactly once
    assert len(preds) == 5
    (metrics,) = read_jsonl(records / "metrics.jsonl")  # only rank 0 wrote
    assert metrics["videos"] == 5 and metrics["failed_videos"] == 0 and metrics["views"] == [2, 1]
    assert metrics["top1"] == recount_top1(preds)
    assert f"top1 {metrics['top1']:.2f}  " in proc.stdout and "(5 videos, 2x1 views" in proc.stdout
    ref = read_jsonl(single / "predictions.jsonl")
    assert [p["video"] for p in preds] == [p["video"] for p in ref]
    for p, q in zip(preds, ref):
        assert [c for c, _ in p["topk"]] == [c for c, _ in q["topk"]]
        assert [v for _, v in p["topk"]] == pytest.approx([v for _, v in q["topk"]], abs=1e-5)


@pytest.mark.slow
def test_cli_reports_failed_videos_and_flops(tmp_path, eval_data, eval_overrides, tiny_checkpoint):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mvit_video.evaluate", *eval_overrides, "test.split=val",
           f"test.checkpoint={tiny_checkpoint}", f"output_dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "GFLOPs/view x 2x1 views = " in proc.stdout
    assert "failed videos: 2" in proc.stdout
    assert "garbage.mp4" in proc.stdout and "missing.mp4" in proc.stdout

    from mvit_video.eval.reports import eval_dir

    records = eval_dir(out, tiny_checkpoint)  # eval/tiny-<hash of its path>: a checkpoint from elsewhere
    assert records.parent == out / "eval" and records.name.startswith("tiny-")
    assert f"appended to {records / 'metrics.jsonl'}" in proc.stdout
    assert not (out / "metrics.jsonl").exists() and not (out / "predictions.jsonl").exists()
    preds = read_jsonl(records / "predictions.jsonl")
    assert len(preds) == 5 and all(len(p["topk"]) == 3 for p in preds)  # top-min(5, C) with 3 classes
    (metrics,) = read_jsonl(records / "metrics.jsonl")
    assert metrics["split"] == "test" and metrics["videos"] == 5 and metrics["failed_videos"] == 2
    assert metrics["checkpoint"] == str(tiny_checkpoint) and metrics["epoch"] is None and metrics["list"] == "val"
    assert metrics["top1"] == recount_top1(preds)
    assert set(metrics) >= {"top1", "top5", "mean_class_acc", "views"}
    rows = list(csv.DictReader((records / "per_class_accuracy.csv").open()))
    assert [r["name"] for r in rows] == ["alpha", "beta", "gamma"]  # names from the checkpoint
    assert [int(r["videos"]) for r in rows] == [2, 2, 1]
    assert (records / "failed_videos.txt").read_text().split() == ["garbage.mp4", "missing.mp4"]


def test_latest_checkpoint(tmp_path, tiny_checkpoint):
    from mvit_video.checkpoint import latest_checkpoint

    with pytest.raises(UserError, match="no checkpoint in"):
        latest_checkpoint(tmp_path)
    d = tmp_path / "checkpoints"
    d.mkdir()
    for epoch in (2, 10):
        (d / f"checkpoint_epoch_{epoch:05d}.pyth").write_bytes(tiny_checkpoint.read_bytes())
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch_00010.pyth"


def test_bad_split_is_a_config_error(eval_overrides, tmp_path):
    from mvit_video.utils.errors import ConfigError

    # checked where the config becomes typed settings, before any test starts
    with pytest.raises(ConfigError, match="test.split"):
        build_config(compose(eval_overrides + ["test.split=holdout", f"output_dir={tmp_path}"]))


@pytest.mark.slow
def test_decode_once_scores_equal_decode_per_view(eval_overrides, tiny_checkpoint):
    """End to end: decoding each video once for its views changes nothing in the scores."""
    from mvit_video.data import build_dataset, build_loader
    from mvit_video.data.clips import open_reader, view_indices, views_of_frames
    from mvit_video.data.loader import test_collate
    from mvit_video.data.sampling import concat_indices
    from mvit_video.eval import run_multiview
    from mvit_video.checkpoint import load_model

    run = build_config(compose(eval_overrides + ["test.num_ensemble_views=3", "test.num_spatial_crops=3"]))
    model = load_model(tiny_checkpoint)
    dataset = build_dataset(run, "test")

    def per_view_item(i: int) -> dict:  # the baseline: each view's frames decoded on their own, the same crops
        with open_reader(dataset.full_paths[i], dataset.spec) as reader:
            parts = [reader.get_frames(idx) for idx in view_indices(dataset.spec, reader.num_frames, reader.fps)]
        views = views_of_frames(torch.cat(parts), concat_indices([len(p) for p in parts]), dataset.spec)
        return {"views": views, "label": dataset.labels[i], "index": i, "path": dataset.paths[i], "ok": True}

    loader = build_loader(dataset, "test", run.data_loader, batch_size=run.test.batch_size, seed=run.seed)
    per_view = [test_collate([per_view_item(i) for i in range(a, min(a + loader.batch_size, len(dataset)))])
                for a in range(0, len(dataset), loader.batch_size)]  # the loader's batches: the same forwards
    results = [run_multiview(model, loader, device="cpu"), run_multiview(model, per_view, device="cpu")]
    assert results[0].paths == results[1].paths and len(results[0]) == 5
    assert torch.equal(results[0].probs, results[1].probs)


def test_latest_checkpoint_skips_an_unreadable_newest(tmp_path, tiny_checkpoint, caplog):
    """As training's resume does (mvit_video.checkpoint.load_latest): a torn newest checkpoint falls back."""
    from mvit_video.checkpoint import latest_checkpoint

    d = tmp_path / "checkpoints"
    d.mkdir()
    (d / "checkpoint_epoch_00002.pyth").write_bytes(tiny_checkpoint.read_bytes())
    (d / "checkpoint_epoch_00010.pyth").write_bytes(tiny_checkpoint.read_bytes()[:1000])  # torn by a full disk
    with caplog.at_level("WARNING"):
        assert latest_checkpoint(tmp_path).name == "checkpoint_epoch_00002.pyth"
    assert "checkpoint_epoch_00010.pyth" in caplog.text
    (d / "checkpoint_epoch_00002.pyth").write_bytes(b"garbage")
    with pytest.raises(UserError, match="no checkpoint in"):
        latest_checkpoint(tmp_path)


@pytest.mark.slow
def test_validation_scores_as_the_test_does(tmp_path, eval_overrides, tiny_checkpoint):
    """validate (training's periodic val) and test: the same views per forward, autocast and scores."""
    from mvit_video.cli import resolve_runtime
    from mvit_video.data import build_dataset, build_loader
    from mvit_video.eval.testing import test, validate
    from mvit_video.checkpoint import load_model

    run = build_config(compose(eval_overrides + ["test.split=val", "test.max_views_per_forward=3",
                                                 "train.mixed_precision=true", f"output_dir={tmp_path}"]))
    model = load_model(tiny_checkpoint)
    calls = []
    model.register_forward_pre_hook(
        lambda m, args: calls.append((args[0].shape[0], torch.is_autocast_enabled("cpu"),
                                      torch.get_autocast_dtype("cpu"))))
    report = test(run, model, None, count_flops=False)
    tested, calls[:] = list(calls), []
    loader = build_loader(build_dataset(run, "val"), "val", run.data_loader, batch_size=run.test.batch_size,
                          seed=run.seed)
    device, amp_dtype = resolve_runtime(run)  # what training passes
    val = validate(model, loader, device, amp_dtype, run.test.max_views_per_forward)
    assert calls == tested
    assert max(n for n, _, _ in calls) == 3 and all(on and dtype == torch.bfloat16 for _, on, dtype in calls)
    assert val == {"top1": report["top1"], "top5": report["top5"], "videos": 5, "failed": 2}


@pytest.mark.slow
def test_a_list_where_nothing_decodes_is_reported(tmp_path, eval_data, eval_overrides, tiny_checkpoint):
    """No video decodes: no accuracy (null, not 0 and not a crash), the failed list, an empty predictions file."""
    from mvit_video.eval.testing import test
    from mvit_video.checkpoint import load_model

    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "test.csv").write_text("garbage.mp4 0\nmissing.mp4 1\n")
    out = tmp_path / "out"
    run = build_config(compose(eval_overrides + [f"data.path_to_data_dir={lists}", f"output_dir={out}"]))
    report = test(run, load_model(tiny_checkpoint), None, count_flops=False)
    assert (report["top1"], report["top5"], report["mean_class_acc"]) == (None, None, None)
    assert report["videos"] == 0 and report["failed"] == ["garbage.mp4", "missing.mp4"]
    assert read_jsonl(out / "metrics.jsonl")[0]["top1"] is None
    assert (out / "predictions.jsonl").read_text() == ""


def test_clip_settings_from_the_checkpoint_unless_explicit(eval_overrides, caplog):
    from mvit_video.predict import clip_settings

    data = build_config(compose(eval_overrides)).data  # 4 frames, jitter [32, 40]
    same = {"num_frames": 4, "train_jitter_scales": [32, 40], "target_fps": 30, "mean": list(data.mean)}
    assert clip_settings(data, same, Path("c.pyth")) == {}  # lists equal tuples, 30 equals 30.0
    theirs = {**same, "num_frames": 8, "test_crop_size": 48, "dataset": "ssv2"}
    with caplog.at_level("INFO"):
        assert clip_settings(data, theirs, Path("c.pyth"), ["data.num_frames"]) == {"test_crop_size": 48}
    assert "data.test_crop_size=48" in caplog.text and "data.num_frames=4 (checkpoint: 8)" in caplog.text
    assert clip_settings(data, None, Path("c.pyth")) == {}


def _epoch_checkpoint(src: Path, out: Path, epoch: int) -> Path:
    """`src` saved as output_dir `out`'s checkpoint of epoch `epoch` (as training names and stamps them)."""
    from mvit_video import checkpoint as ck
    from mvit_video.utils.io import atomic_torch_save

    saved = torch.load(src, weights_only=True)
    path = ck.epoch_checkpoint_path(out, epoch)
    atomic_torch_save({**saved, "epoch": epoch}, path)
    return path


def _tensorboard_points(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            points += [(e.step, e.value) for e in acc.Scalars(tag)]
    return sorted(points)


@pytest.mark.slow
def test_evaluation_of_a_live_run_writes_only_its_own_records(tmp_path, eval_overrides, tiny_checkpoint, caplog):
    """Before: evaluate appended its test line into the live run's metrics.jsonl, overwrote predictions.jsonl on
    every evaluation, and put all TensorBoard test points at one step. Now: a folder per checkpoint, a line naming
    checkpoint and epoch, the points at each checkpoint's epoch, the training's files untouched."""
    from mvit_video.engine.runlock import RunLock
    from mvit_video.evaluate import run as evaluate
    from mvit_video.summary import load_run

    out = tmp_path / "run"
    paths = [_epoch_checkpoint(tiny_checkpoint, out, epoch) for epoch in (1, 2, 3)]
    training_lines = '{"split": "train", "epoch": 1}\n'
    (out / "metrics.jsonl").write_text(training_lines)
    lock = RunLock(out).acquire()  # a training run (this process) holds the folder
    try:
        with caplog.at_level("INFO"):
            reports = [evaluate(compose(eval_overrides + [f"output_dir={out}", f"test.checkpoint={p}"]))
                       for p in paths]
            reports.append(evaluate(compose(eval_overrides + [f"output_dir={out}"])))  # the latest: epoch 3
    finally:
        lock.release()
    assert f"{out} is in use by a training run (pid {os.getpid()}" in caplog.text
    assert (out / "metrics.jsonl").read_text() == training_lines  # nothing appended into the live run
    assert not (out / "predictions.jsonl").exists() and not (out / "tensorboard").exists()
    for epoch, path in zip((1, 2, 3), paths):
        folder = out / "eval" / f"checkpoint_epoch_{epoch:05d}"
        lines = read_jsonl(folder / "metrics.jsonl")
        assert [(m["checkpoint"], m["epoch"]) for m in lines] == [(str(path), epoch)] * (2 if epoch == 3 else 1)
        assert len(read_jsonl(folder / "predictions.jsonl")) == 5
    assert [r["epoch"] for r in reports] == [1, 2, 3, 3]
    # one event folder for evaluations, each point at its checkpoint's epoch
    points = _tensorboard_points(out / "eval" / "tensorboard", "test/top1")
    assert [step for step, _ in points] == [1, 2, 3, 3]
    assert [v for _, v in points] == pytest.approx([r["top1"] for r in reports])
    # summary shows the newest test, with its predictions
    summary = load_run(out)
    assert summary.test["time"] == reports[-1]["time"] and len(summary.predictions) == 5


def _lists(root: Path, classes: list[str], lines: list[str]) -> Path:
    root.mkdir()
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "test.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_a_checkpoint_of_other_classes_is_refused(tmp_path, eval_overrides, tiny_checkpoint, class_names):
    """Before: a 3-class checkpoint on a 2-class list (or model.num_classes=2 on the command line) only warned that
    class names differ and reported results over the checkpoint's classes."""
    from mvit_video.evaluate import run as evaluate
    from mvit_video.utils.errors import ConfigError

    out = tmp_path / "out"
    base = eval_overrides + [f"output_dir={out}", f"test.checkpoint={tiny_checkpoint}"]
    with pytest.raises(ConfigError, match=r"'model.num_classes' is 2 but the checkpoint .*tiny.pyth has a 3-class"):
        evaluate(compose(base + ["model.num_classes=2"]), ["model.num_classes"])

    two = _lists(tmp_path / "two", ["alpha", "beta"], ["v0.mp4 0", "v1.mp4 1"])
    with pytest.raises(ConfigError, match=r"has 3 classes \('alpha', 'beta', 'gamma'\) but the data's class list "
                                          r".* has 2 \('alpha', 'beta'\)"):
        evaluate(compose(base + [f"data.path_to_data_dir={two}"]))
    renamed = _lists(tmp_path / "renamed", ["alpha", "beta", "delta"], ["v0.mp4 0"])
    with pytest.raises(ConfigError, match=r"'delta'"):
        evaluate(compose(base + [f"data.path_to_data_dir={renamed}", "test.allow_class_subset=true"]))

    # a subset, allowed explicitly: scored among the checkpoint's classes, labels mapped by name
    subset = _lists(tmp_path / "subset", ["gamma", "alpha"], ["v0.mp4 1", "v2.mp4 0", "v3.mp4 1"])
    report = evaluate(compose(base + [f"data.path_to_data_dir={subset}", "test.allow_class_subset=true"]))
    assert report["videos"] == 3
    from mvit_video.eval.reports import eval_dir

    preds = read_jsonl(eval_dir(out, tiny_checkpoint) / "predictions.jsonl")
    assert [(p["video"], p["label"], p["label_name"]) for p in preds] == [
        ("v0.mp4", 0, "alpha"), ("v2.mp4", 2, "gamma"), ("v3.mp4", 0, "alpha")]
    assert report["top1"] == recount_top1(preds)
