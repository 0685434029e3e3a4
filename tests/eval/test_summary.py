"""python -m mvit_video.summary over a real tiny training run: the table, both PNGs, per_class.csv, TensorBoard."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_overrides

from mvit_video.utils.errors import UserError


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, eval_data, class_names) -> Path:
    """A 2-epoch tiny training run (3 named classes) with its final test: metrics, predictions, tensorboard."""
    import torch

    from mvit_video.config import compose
    from mvit_video.train import train

    lists = tmp_path_factory.mktemp("summary_lists")
    lines = (eval_data / "test.csv").read_text().splitlines()
    for split in ("train", "val", "test"):
        (lists / f"{split}.csv").write_text("".join(f"{eval_data / 'videos' / line}\n" for line in lines))
    (lists / "classes.txt").write_text("\n".join(class_names) + "\n")
    out = tmp_path_factory.mktemp("summary_run") / "tiny_run"
    torch.set_num_threads(1)
    train(compose(tiny_overrides(lists, out, f"model.num_classes={len(class_names)}", "test.enable=true")))
    return out


@pytest.mark.slow  # trains a tiny run first
def test_summary_table_pngs_and_per_class(trained_run, capsys, class_names):
    from mvit_video.summary import main

    assert main([str(trained_run)]) == 0
    out = capsys.readouterr().out.splitlines()
    header, rule, row = out[0], out[1], out[2]
    assert header.split("  ")[0].strip() == "run" and "best val top1" in header and "GFLOPs/view" in header
    assert set(rule) <= {"-", " "}
    metrics = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    test = [m for m in metrics if m["split"] == "test"][-1]
    vals = [m for m in metrics if m["split"] == "val"]
    best = max(vals, key=lambda m: (m["top1"], -m["epoch"]))
    cells = row.split()
    assert cells[0] == str(trained_run) and cells[1] == "2"  # epochs
    assert cells[2:5] == [f"{best['top1']:.2f}", str(best["epoch"]), f"{test['top1']:.2f}"]
    assert cells[7] == "1x1" and float(cells[8]) == pytest.approx(test["gflops_per_view"], abs=0.01)
    assert test["gflops_per_view"] > 0

    for name in ("summary.png", "confusion.png"):
        data = (trained_run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    rows = list(csv.DictReader((trained_run / "per_class.csv").read_text().splitlines()))
    assert [r["name"] for r in rows] == class_names
    preds = [json.loads(x) for x in (trained_run / "predictions.jsonl").read_text().splitlines()]
    assert sum(int(r["videos"]) for r in rows) == len(preds) == 5
    correct = sum(p["topk"][0][0] == p["label"] for p in preds)
    assert sum(round(int(r["videos"]) * float(r["top1"] or 0) / 100) for r in rows) == correct
    # predictions carry the class names beside the indices
    assert all(p["label_name"] == class_names[p["label"]] for p in preds)
    assert all(p["topk_names"] == [class_names[c] for c, _ in p["topk"]] for p in preds)


@pytest.mark.slow  # trains a tiny run first
def test_test_metrics_and_config_in_tensorboard(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained_run / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"test/top1", "test/top5", "test/mean_class_acc", "epoch/train_loss"} <= set(tags["scalars"])
    test = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()][-1]
    (event,) = acc.Scalars("test/top1")
    assert event.step == 2 and event.value == pytest.approx(test["top1"])
    assert "config/text_summary" in tags["tensors"]
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "num_frames: 4" in text


@pytest.mark.slow
def test_most_confused_classes_when_many(tmp_path):
    from mvit_video.summary import CONFUSION_PNG, Run, confusion_matrix, most_confused, plot_confusion

    rng = np.random.default_rng(0)
    preds = []
    for i in range(300):  # 40 classes; classes 3 and 7 are mixed up all the time, the rest mostly right
        label = int(rng.integers(0, 40))
        guess = {3: 7, 7: 3}.get(label, label if rng.random() < 0.9 else int(rng.integers(0, 40)))
        preds.append({"label": label, "topk": [[guess, 0.5]]})
    run = Run(tmp_path, predictions=preds, class_names=[f"c{i}" for i in range(40)])
    matrix = confusion_matrix(run)
    assert matrix.shape == (40, 40) and matrix.sum() == 300
    keep = most_confused(matrix, 10)
    assert len(keep) == 10 and {3, 7} <= set(keep)
    plot_confusion(matrix, run.class_names, tmp_path / CONFUSION_PNG, 10, "t")
    assert (tmp_path / CONFUSION_PNG).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # trains a tiny run first
def test_without_matplotlib_one_line_and_the_table(trained_run, tmp_path, monkeypatch, capsys):
    import shutil

    from mvit_video.summary import main

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("*.png", "per_class.csv"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert main([str(run)]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == 'error: plots need matplotlib, which is not installed: pip install -e ".[plots]"'
    assert str(run) in captured.out and (run / "per_class.csv").is_file()
    assert not (run / "summary.png").exists()


@pytest.mark.slow  # trains a tiny run first
def test_several_runs_and_a_run_without_test(trained_run, tmp_path, capsys):
    import shutil

    from mvit_video.summary import main

    running = tmp_path / "running"  # a run still training: no test record, no predictions
    shutil.copytree(trained_run, running, ignore=shutil.ignore_patterns("*.png", "*.csv", "predictions.jsonl"))
    lines = (running / "metrics.jsonl").read_text().splitlines()
    (running / "metrics.jsonl").write_text("".join(x + "\n" for x in lines if '"split": "test"' not in x))
    assert main([str(trained_run), str(running)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].split()[0] == str(trained_run) and table[3].split()[0] == str(running)
    assert table[3].split()[4:] == ["-"] * 6  # test figures, views, GFLOPs
    assert (running / "summary.png").is_file() and not (running / "confusion.png").exists()


def test_not_a_run_directory(tmp_path, capsys):
    from mvit_video.summary import load_run, main

    with pytest.raises(UserError, match="no metrics.jsonl"):
        load_run(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: not a run directory (no such directory)"


# ---------------------------------------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_a_sweep_reads_back_as_one_table(kinetics_list_dir, tmp_path, capsys):
    """`train -m` over two LRs and two seeds: job folders named by the swept values only (not by every override),
    sweep.jsonl maps them to their overrides, the basic launcher's line says what is true (no .submitit folder),
    and `summary SWEEP` and `summary SWEEP/*` print one table of the four runs with the swept keys as columns."""
    import subprocess

    from mvit_video.summary import main

    out = tmp_path / "sweep"
    args = tiny_overrides(kinetics_list_dir, out, "solver.max_epoch=1", "solver.warmup_epochs=0", "train.batch_size=4",
                          "data.num_frames=2")
    r = subprocess.run([sys.executable, "-m", "mvit_video.train", "-m", *args, "solver.base_lr=1e-3,2e-3",
                        "seed=0,1"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"multirun: each job writes to {out}/<base_lr,seed=...>" in r.stderr
    assert "jobs run one after another in this process" in r.stderr and ".submitit" not in r.stderr
    names = ["base_lr=0.001,seed=0", "base_lr=0.001,seed=1", "base_lr=0.002,seed=0", "base_lr=0.002,seed=1"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == names
    index = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert [(rec["job"], rec["dir"]) for rec in index] == list(enumerate(names))
    assert "solver.base_lr=0.002" in index[2]["overrides"] and "seed=0" in index[2]["overrides"]

    for argv in ([str(out)], sorted(str(p) for p in out.iterdir())):  # the folder, and the shell's sweep/*
        assert main(["--no-plots", *argv]) == 0
        captured = capsys.readouterr()
        lines = captured.out.splitlines()
        assert lines[0].split()[:4] == ["run", "base_lr", "seed", "epochs"]
        rows = [line.split() for line in lines[2:6]]
        assert [(row[0], row[1], row[2], row[3]) for row in rows] == [
            (str(out / n), n.split(",")[0].split("=")[1], n.split("=")[-1], "1") for n in names]
        assert len(lines) == 6 and "error" not in captured.err


@pytest.mark.slow  # trains a tiny run first
def test_summary_after_evaluate_shows_the_newest_test(trained_run, tmp_path, capsys):
    """Train (its test: 1x1 views), then `mvit-evaluate` the run folder with 1x3 views: `summary` reports that
    newer test (README: 'reads both layouts and shows the newest test')."""
    import os
    import shutil
    import subprocess
    import sys

    from mvit_video.summary import main

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    r = subprocess.run([sys.executable, "-m", "mvit_video.evaluate", "--config-path", str(run), "--config-name",
                        "config", "test.num_spatial_crops=3"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert main([str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "views" in out[0] and "1x3" in out[2].split() and "1x1" not in out[2].split(), out[:3]
    (evaluated,) = (run / "eval").glob("checkpoint_*/metrics.jsonl")
    assert [json.loads(x)["views"] for x in evaluated.read_text().splitlines()] == [[1, 3]]
