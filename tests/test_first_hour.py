"""A new user's first hour (issue 11): short runs, untouched data folders, evaluation that follows the checkpoint,
progress, one-line errors that teach, data lists, rotated videos, shareable files, results that read well."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from tiny import tiny_overrides

from mvit_video.config import build_config, compose, fit_schedule
from mvit_video.data.decoding import open_video
from mvit_video.data.encode import write_video
from mvit_video.data.prepare.reencode import ReencodeSettings, reencode_video
from mvit_video.utils.errors import ConfigError, UserError, one_line

PRESETS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml"))


def _cli(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------- 1. short runs


@pytest.mark.slow
@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_a_run_shorter_than_the_warmup_is_allowed(preset: str | None) -> None:
    cfg = compose(([f"+experiment={preset}"] if preset else []) + ["solver.max_epoch=1"])
    warmup = cfg.solver.warmup_epochs
    assert warmup >= 1  # the preset's warmup does not fit into one epoch
    shortened, note = fit_schedule(cfg)
    assert note and f"solver.warmup_epochs={warmup}" in note and "shortened to 0.5" in note
    assert shortened == 0.5 and build_config(cfg).solver.warmup_epochs == 0.5
    assert cfg.solver.warmup_epochs == warmup  # the composed config is left as it is
    assert fit_schedule(compose(["solver.max_epoch=8"])) == (None, None)  # a schedule that fits is left alone


@pytest.mark.slow
def test_short_training_run_logs_the_shortened_warmup(kinetics_list_dir, tmp_path: Path) -> None:
    from mvit_video.train import train

    out = tmp_path / "short"
    cfg = compose(tiny_overrides(kinetics_list_dir, out, "solver.max_epoch=1", "solver.warmup_epochs=30",
                                 "log_period=1"))
    train(cfg)
    log = (out / "train.log").read_text()
    assert log.count("warmup shortened to 0.5 epochs") == 1  # once, in the run's own log
    assert "warmup_epochs: 0.5" in (out / "config.yaml").read_text() and cfg.solver.warmup_epochs == 30
    # 4. non-interactive training lines carry the time left
    assert "ETA epoch 0:00:" in log and "training 0:00:" in log


# --------------------------------------------------------------------------------- 2. a user's folder of lists


@pytest.mark.slow
def test_the_first_run_command_as_a_newcomer_runs_it_only_smaller(tmp_path: Path) -> None:
    """`python -m mvit_video.train` with nothing but the set made small and one epoch: the synthetic set is
    generated into $XDG_CACHE_HOME/mvit_video/synthetic, decoded with the default decoder (decord) in the default
    worker, trained, validated and tested with its 2x1 views, predictions written; the same command again resumes,
    finds training done and adds nothing."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mvit_video.train", "data.synthetic.train_per_class=2",
               "data.synthetic.val_per_class=1", "data.synthetic.test_per_class=1", "solver.max_epoch=1",
               f"output_dir={out}"]
    r = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (cache,) = (tmp_path / "cache" / "mvit_video" / "synthetic").iterdir()
    assert len(list(cache.rglob("*.mp4"))) == 6 * (2 + 1 + 1)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["split"] for m in lines] == ["train", "val", "test"] and lines[-1]["views"] == [2, 1]
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 6
    r = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "training already finished (1 epochs)" in (out / "train.log").read_text()
    assert [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()] == lines


@pytest.mark.slow
def test_synthetic_default_never_writes_into_a_folder_of_lists(kinetics_list_dir, tmp_path: Path) -> None:
    from mvit_video.data.synthetic import ensure_synthetic_dataset

    before = sorted(p.name for p in kinetics_list_dir.iterdir())
    r = _cli("mvit_video.train", [f"data.path_to_data_dir={kinetics_list_dir}"], tmp_path)
    line = _one_error_line(r)
    assert "data.dataset=kinetics model.num_classes=2" in line and "train.csv" in line
    assert sorted(p.name for p in kinetics_list_dir.iterdir()) == before
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a synthetic-set cache"):
        ensure_synthetic_dataset(videos, num_classes=2, train_per_class=1, val_per_class=1, test_per_class=1)
    assert [p.name for p in videos.iterdir()] == ["clip.mp4"]


# ------------------------------------------------------------------- 3. evaluation follows the checkpoint


def _tiny_checkpoint(kinetics_list_dir: Path, out: Path, *extra: str, nan: bool = False) -> Path:
    """A checkpoint of an untrained tiny model, saved as training saves it (4 frames, 32 px)."""
    from mvit_video import checkpoint as ck
    from mvit_video.config import build_config
    from mvit_video.models import build_model
    from mvit_video.settings import CheckpointData

    run = build_config(compose(tiny_overrides(kinetics_list_dir, out, *extra)))
    model = build_model(run.model)
    if nan:
        with torch.no_grad():
            model.head.projection.weight[0, 0] = float("nan")
    data = ck.make_checkpoint(model, run.model, CheckpointData.from_run(run).to_dict(), None)
    data["cfg"] = run.yaml
    path = ck.epoch_checkpoint_path(out, 1)
    ck.save(data, path)
    (out / "config.yaml").write_text(run.yaml)
    return path


@pytest.mark.slow
def test_evaluate_takes_clip_settings_from_the_checkpoint(kinetics_list_dir, tmp_path: Path, caplog) -> None:
    from mvit_video import evaluate

    path = _tiny_checkpoint(kinetics_list_dir, tmp_path / "run")
    # a preset-like config (8 frames, 48 px) on a checkpoint trained at 4 x 32^2: the checkpoint's settings win
    cfg = compose(tiny_overrides(kinetics_list_dir, tmp_path / "eval", "data.num_frames=8", "data.test_crop_size=48",
                                 "data.train_jitter_scales=[48,60]", f"test.checkpoint={path}"))
    with caplog.at_level(logging.INFO):
        report = evaluate.run(cfg)
    assert (cfg.data.num_frames, cfg.data.test_crop_size, list(cfg.data.train_jitter_scales)) == (4, 32, [32, 40])
    assert "clip settings from the checkpoint" in caplog.text and "data.num_frames=4" in caplog.text
    assert report["videos"] == 4 and "differ" not in caplog.text
    # 4. testing shows progress: videos/s and ETA (a bar in a terminal)
    assert "videos/s, ETA" in caplog.text

    # set on the command line: the user's value is used, with a warning naming both
    caplog.clear()
    cfg = compose(tiny_overrides(kinetics_list_dir, tmp_path / "eval", "data.num_frames=8", f"test.checkpoint={path}"))
    with caplog.at_level(logging.INFO):
        evaluate.run(cfg, ["data.num_frames"])
    assert cfg.data.num_frames == 8
    assert "data.num_frames=8 (checkpoint: 4)" in caplog.text


@pytest.mark.slow
def test_evaluate_retests_a_run_from_its_folder(kinetics_list_dir, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _tiny_checkpoint(kinetics_list_dir, run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _cli("mvit_video.evaluate", ["--config-path", os.path.relpath(run, elsewhere), "--config-name", "config"],
             elsewhere)
    assert r.returncode == 0, r.stderr
    assert "top1" in r.stdout and "videos, 1x1 views" in r.stdout
    records = run / "eval" / "checkpoint_epoch_00001" / "metrics.jsonl"  # evaluate's own folder for the checkpoint
    (line,) = [json.loads(x) for x in records.read_text().splitlines()]
    assert line["split"] == "test" and line["epoch"] is None and not (run / "metrics.jsonl").exists()
    assert list(elsewhere.iterdir()) == []  # Hydra left no outputs/<date>/ folder behind
    r = _cli("mvit_video.evaluate", ["--config-path", str(run), "--config-name", "config", "data.num_frame=2"],
             elsewhere)
    assert "unknown config key 'data.num_frame' (did you mean data.num_frames" in _one_error_line(r)


# ------------------------------------------------------------------------------------------------ 4. progress


def test_log_records_go_above_the_progress_bar() -> None:
    from tqdm import tqdm

    from mvit_video.utils.progress import TqdmLoggingHandler

    stream = io.StringIO()
    handler = TqdmLoggingHandler(stream)
    log = logging.getLogger("test_first_hour.bar")
    log.addHandler(handler)
    log.propagate = False
    try:
        bar = tqdm(total=10, file=stream, ascii=True, mininterval=0)
        bar.update(3)
        log.warning("a warning while the bar runs")
        bar.close()
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "a warning while the bar runs\n" in text
    assert "]a warning" not in text  # not glued to the bar's line


# -------------------------------------------------------------------------------------- 5. errors that teach


@pytest.mark.parametrize("override, expected", [
    ("experiment=k400_s_16x4", "did you mean +experiment=k400_s_16x4 ?"),
    ("solver.base_lrr=1e-3", "unknown config key 'solver.base_lrr' (did you mean solver.base_lr"),
    ("solvr.base_lr=1e-3", "(did you mean solver.base_lr"),
    ("+experiment=k400_s_16x", "unknown config choice 'experiment/k400_s_16x' (did you mean k400_s_16x4"),
    ("output_dir=/tmp/a=b", "a value containing '=' must be quoted for Hydra, e.g. 'output_dir=\"/tmp/a=b\"'"),
])
def test_config_mistakes_get_a_suggestion(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        compose([override])
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_cli_help_and_hydra_flags_give_one_line(tmp_path: Path) -> None:
    r = _cli("mvit_video.stats", ["--help"], tmp_path)
    assert r.returncode == 0 and "python -m mvit_video.stats" in r.stdout
    line = _one_error_line(_cli("mvit_video.train", ["--cfg", "job", "data.num_frame=4"], tmp_path))
    assert "unknown config key 'data.num_frame' (did you mean data.num_frames" in line
    r = _cli("mvit_video.train", ["--cfg", "job", "data.num_frames=4"], tmp_path)
    assert r.returncode == 0 and "num_frames: 4" in r.stdout


@pytest.mark.slow
def test_a_checkpoint_holding_code_is_refused_as_such(tmp_path: Path) -> None:
    from mvit_video.checkpoint import torch_load

    class Runs:  # what a malicious pickle does: call a function when loaded
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"model": {}, "x": Runs()}, tmp_path / "code.pyth")
    with pytest.raises(UserError, match=r"holds a python object \((posix|nt)\.system\)"):
        torch_load(tmp_path / "code.pyth")


@pytest.mark.slow
def test_bad_list_and_class_files_are_one_line(kinetics_list_dir, tmp_path: Path) -> None:
    from mvit_video.data import build_dataset

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val", "test"):
        (data / f"{split}.csv").write_text((kinetics_list_dir / f"{split}.csv").read_text())
    (data / "classes.txt").mkdir()
    cfg = build_config(compose(tiny_overrides(data, tmp_path / "out")))
    with pytest.raises(UserError, match=f"{data / 'classes.txt'}: is a directory"):
        build_dataset(cfg, "train")
    (data / "classes.txt").rmdir()
    (data / "train.csv").write_bytes("caf\xe9.mp4 0\n".encode("latin-1"))
    with pytest.raises(UserError, match=f"{data / 'train.csv'}: not UTF-8 text"):
        build_dataset(cfg, "train")


def _truncated_webm(tmp_path: Path) -> Path:
    frames = np.random.default_rng(0).integers(0, 255, (24, 64, 80, 3)).astype(np.uint8)
    write_video(tmp_path / "full.webm", frames, fps=30.0)
    data = (tmp_path / "full.webm").read_bytes()
    (tmp_path / "cut.webm").write_bytes(data[:1000])  # header kept, frames cut off
    return tmp_path / "cut.webm"


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_truncated_webm_is_undecodable_and_decord_stays_quiet(decoder: str, tmp_path: Path, capfd) -> None:
    from mvit_video.data.decoding import VideoDecodeError

    path = _truncated_webm(tmp_path)
    capfd.readouterr()
    with pytest.raises(VideoDecodeError) as e:
        with open_video(path, decoder) as reader:
            reader.get_frames([0, 1])
    assert str(e.value) == f"{path}: undecodable video (truncated or corrupt file?)"
    with pytest.raises(VideoDecodeError, match="cannot open as a video"):
        (tmp_path / "head.webm").write_bytes((tmp_path / "full.webm").read_bytes()[:300])
        open_video(tmp_path / "head.webm", decoder)
    assert capfd.readouterr().err == ""  # no "[matroska @ 0x..] Read error" / "ERROR opening" lines from decord


@pytest.mark.slow
def test_all_videos_unreadable_is_one_line_with_the_first_path(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val", "test"):
        (data / f"{split}.csv").write_text("a.mp4 0\nb.mp4 1\nc.webm 0\nshort.mp4 1\n")
    # a wrong data.path_prefix: every relative path points nowhere
    r = _cli("mvit_video.train", tiny_overrides(data, tmp_path / "out", "data.path_prefix=/nowhere",
                                                "data_loader.num_workers=1", "data.max_bad_retries=2"), tmp_path)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 3 videos in a row could not be decoded") and "first tried: /nowhere/" in last
    assert "Traceback" not in r.stderr and "DataLoader worker" not in r.stderr


def test_worker_traceback_is_reduced_to_the_message() -> None:
    wrapped = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1, in f\nmvit_video.utils.errors.UserError: the message")
    assert one_line(wrapped) == "the message"


# ------------------------------------------------------------------------------------------------- 6. data lists


@pytest.mark.slow
def test_list_keys_bom_and_missing_prefix_hint(kinetics_list_dir, video_dir, tmp_path: Path, capsys) -> None:
    from mvit_video.data import build_dataset

    data = tmp_path / "data"
    data.mkdir()
    names = ["a.mp4", "b.mp4"]
    (data / "train_clean.csv").write_text("\ufeff" + "".join(f"{n} {i}\n" for i, n in enumerate(names)),
                                          encoding="utf-8")  # BOM as some editors write it
    cfg = build_config(compose(tiny_overrides(data, tmp_path / "out", "data.train_list=train_clean.csv",
                                              f"data.path_prefix={video_dir}")))
    ds = build_dataset(cfg, "train")
    assert ds.paths == names and ds.labels == [0, 1]

    from mvit_video.data.prepare import check as check_dataset  # scripts/check_dataset.py's command
    assert check_dataset.main([str(data / "train_clean.csv"), "--workers", "0"]) == 1
    assert "0/2 found: forgot --prefix?" in capsys.readouterr().out
    assert check_dataset.main([str(data / "train_clean.csv"), "--workers", "0", "--prefix", str(video_dir)]) == 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_more_workers_than_cores_warns_once(kinetics_list_dir, tmp_path: Path, caplog) -> None:
    from mvit_video.data import build_dataset, build_loader, loader

    loader._warned_workers = False
    cores = loader.available_cores()
    run = build_config(compose(tiny_overrides(kinetics_list_dir, tmp_path, f"data_loader.num_workers={cores + 1}")))
    ds = build_dataset(run, "val")
    with caplog.at_level(logging.WARNING):
        for split in ("val", "test"):
            build_loader(ds, split, run.data_loader, batch_size=run.test.batch_size, seed=run.seed)
    assert caplog.text.count(f"data_loader.num_workers={cores + 1} exceeds the {cores} CPU cores") == 1


@pytest.mark.slow
def test_bad_videos_reported_once_and_val_without_videos_is_null(kinetics_list_dir, video_dir, tmp_path: Path,
                                                                 caplog) -> None:
    from mvit_video.train import train

    data = tmp_path / "data"
    data.mkdir()
    good = (kinetics_list_dir / "train.csv").read_text()
    (data / "train.csv").write_text(good + f"{tmp_path / 'gone.mp4'} 1\n")
    (data / "val.csv").write_text(f"{tmp_path / 'gone.mp4'} 1\n{video_dir / 'garbage.mp4'} 0\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        train(compose(tiny_overrides(data, out, "data_loader.num_workers=2", "train.batch_size=5",
                                     "solver.max_epoch=2")))
    log = (out / "train.log").read_text()
    assert log.count(f"cannot decode {tmp_path / 'gone.mp4'} (skipped") == 1  # not once per worker
    assert "skipping unreadable video" not in caplog.text
    val = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
    assert val and all(v["top1"] is None and v["top5"] is None for v in val)  # null, not 0.0


# -------------------------------------------------------------------------------------------- 7. rotated videos


@pytest.mark.slow
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_decoders_agree_on_rotated_videos(degrees: int, tmp_path: Path) -> None:
    frames = np.zeros((12, 64, 80, 3), np.uint8)
    frames[:, :10, :20] = 255  # a white block in the top-left corner shows which way the frame turned
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 80, 64, "yuv420p"
        stream.set_display_rotation(degrees)  # the display matrix a phone writes
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    with open_video(path, "decord") as r:
        by_decord = r.get_frames([0, 5])
    with open_video(path, "pyav") as r:
        by_pyav = r.get_frames([0, 5])
    upright = torch.from_numpy(np.rot90(frames[0], degrees // 90).copy())
    assert by_pyav.shape == by_decord.shape == (2, *upright.shape)
    assert (by_pyav.int() - by_decord.int()).abs().max() <= 2
    assert (by_pyav[0].int() - upright.int()).abs().float().mean() < 3
    # The prepare commands' re-encoded copy (--reencode-short-side) is upright in its pixels, for both readers
    copy = tmp_path / "copy.mp4"
    reencode_video(path, copy, ReencodeSettings(short_side=64, keyint=5))
    for decoder in ("pyav", "decord"):
        with open_video(copy, decoder) as r:
            first = r.get_frames([0])[0]
        assert first.shape == upright.shape and (first.int() - upright.int()).abs().float().mean() < 3, decoder


# ------------------------------------------------------------------------------------------ 8. shareable files


@pytest.mark.slow
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(umask: int, mode: int, tmp_path: Path) -> None:
    from mvit_video import checkpoint as ck
    from mvit_video.utils.io import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text("x", tmp_path / "config.yaml")
        ck.save({"model": {}}, tmp_path / "checkpoint.pyth")
    finally:
        os.umask(old)
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == mode
    assert (tmp_path / "checkpoint.pyth").stat().st_mode & 0o777 == mode


# ------------------------------------------------------------------------------------ 10. results that read well


@pytest.mark.slow
def test_a_nan_checkpoint_is_refused(kinetics_list_dir, tmp_path: Path) -> None:
    from mvit_video.checkpoint import load_model

    path = _tiny_checkpoint(kinetics_list_dir, tmp_path / "run", nan=True)
    with pytest.raises(UserError, match=r"weight 'head.projection.weight' holds NaN/inf"):
        load_model(path)
    from mvit_video.checkpoint import load_checkpoint_info, load_pretrained
    from mvit_video.models import build_model
    from mvit_video.models.config import MViTConfig

    model = build_model(MViTConfig.from_dict(load_checkpoint_info(path)["model_config"]))
    with pytest.raises(UserError, match=r"weight 'head.projection.weight' holds NaN/inf"):  # fine-tuning from it
        load_pretrained(model, path)
    line = _one_error_line(_cli("mvit_video.evaluate", tiny_overrides(kinetics_list_dir, tmp_path / "eval",
                                                                      f"test.checkpoint={path}"), tmp_path))
    assert "holds NaN/inf values" in line


def test_submitit_runs_say_where_they_write(tmp_path: Path, capsys, monkeypatch) -> None:
    from mvit_video.cli import precheck_multirun as _precheck_multirun

    # as on a SLURM login node: an `srun` on PATH (off a cluster the launcher is refused, tested in test_preempt)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    _precheck_multirun(["hydra/launcher=mvit_slurm", f"output_dir={tmp_path}/k400", "solver.base_lr=1e-4,2e-4"])
    err = capsys.readouterr().err
    assert f"under {tmp_path}/k400/" in err and f"SLURM stdout/stderr go to {tmp_path}/k400/.submitit/%j" in err
    assert not (tmp_path / "k400").exists()
