"""Tests of the data tools: the prepare/check commands behind scripts/prepare_kinetics.py, prepare_ssv2.py and
check_dataset.py (mvit_video.data.prepare), and the pytorchvideo baseline that scripts/benchmark_data.py measures
against. Videos are real (written with PyAV)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import indexed_frames, make_cfg

from mvit_video.data.encode import write_video
from mvit_video.data.prepare import check as check_dataset
from mvit_video.data.prepare import kinetics as prepare_kinetics
from mvit_video.data.prepare import ssv2 as prepare_ssv2

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


def _tiny_video(path: Path, seed: int = 0, num_frames: int = 8) -> None:
    """A real 48x32 video whose frames differ (seeded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, indexed_frames(num_frames, height=32, width=48, seed=seed), fps=30.0)


def _run_cli(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Call a script's main(argv); returns (exit code, stdout, stderr), exit code from SystemExit when raised."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return int(code or 0), out.out, out.err


# --------------------------------------------------------------------------------------------- prepare_kinetics

K_HEADER = "label,youtube_id,time_start,time_end,split\n"


@pytest.fixture
def kinetics_raw(tmp_path: Path) -> Path:
    """Official-style CSVs + downloaded videos in three naming schemes; two train clips and one val clip missing."""
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "train.csv").write_text(
        K_HEADER
        + "zumba,aaaaaaaaaaa,10,20,train\n"  # {id}_{start:06d}_{end:06d}.mp4, flat
        + '"passing American football (in game)",bbbbbbbbbbb,0,10,train\n'  # quoted name with a comma-free paren
        + "abseiling,ccc-ccc_ccc,5,15,train\n"  # {split}/{label}/ layout, id with - and _
        + "abseiling,ddddddddddd,1,11,train\n"  # plain {id}.webm
        + "zumba,missing0001,0,10,train\n"
        + "zumba,eeeeeeeeeee,0,10,train\n"  # an empty file: counted as missing
    )
    (ann / "validate.csv").write_text(K_HEADER + "zumba,fffffffffff,30,40,val\n" + "abseiling,missing0002,0,10,val\n")
    # K600/K700-style test CSV: no label column
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\n" + "ggggggggggg,3,13,test\n"
                                  + "missing0003,0,10,test\n")
    vids = tmp_path / "videos"
    _tiny_video(vids / "aaaaaaaaaaa_000010_000020.mp4", 0)
    _tiny_video(vids / "bbbbbbbbbbb_000000_000010.mp4", 1)
    _tiny_video(vids / "train" / "abseiling" / "ccc-ccc_ccc_000005_000015.mp4", 2)
    _tiny_video(vids / "ddddddddddd.webm", 3)
    (vids / "eeeeeeeeeee_000000_000010.mp4").write_bytes(b"")
    _tiny_video(vids / "val" / "fffffffffff_000030_000040.mp4", 4)
    _tiny_video(vids / "test" / "ggggggggggg_000003_000013.mp4", 5)
    (vids / "notes.txt").write_text("not a video")
    return tmp_path


def test_prepare_kinetics_lists_classes_and_missing(kinetics_raw: Path, capsys) -> None:
    out = kinetics_raw / "lists"
    code, stdout, _ = _run_cli(prepare_kinetics.main, ["--annotations", str(kinetics_raw / "annotations"),
                                                       "--videos", str(kinetics_raw / "videos"), "--out", str(out)],
                               capsys)
    assert code == 0
    classes = (out / "classes.txt").read_text().splitlines()
    assert classes == ["abseiling", "passing American football (in game)", "zumba"]  # sorted train labels
    train = [line.rsplit(" ", 1) for line in (out / "train.csv").read_text().splitlines()]
    assert train == [["aaaaaaaaaaa_000010_000020.mp4", "2"], ["bbbbbbbbbbb_000000_000010.mp4", "1"],
                     ["train/abseiling/ccc-ccc_ccc_000005_000015.mp4", "0"], ["ddddddddddd.webm", "0"]]
    assert (out / "val.csv").read_text() == "val/fffffffffff_000030_000040.mp4 2\n"
    # the unlabelled test split gets a paths-only file, never a list with invented labels
    assert not (out / "test.csv").exists()
    assert (out / "test_unlabeled.txt").read_text() == "test/ggggggggggg_000003_000013.mp4\n"
    missing_train = (out / "missing_train.txt").read_text().splitlines()
    assert missing_train == [K_HEADER.strip(), "zumba,missing0001,0,10,train", "zumba,eeeeeeeeeee,0,10,train"]
    assert (out / "missing_val.txt").read_text().splitlines()[1] == "abseiling,missing0002,0,10,val"
    assert (out / "missing_test.txt").read_text().splitlines()[1] == "missing0003,0,10,test"
    assert "train: 4/6 videos found" in stdout and "2 missing" in stdout and "1 of them empty" in stdout
    assert "val: 1/2 videos found" in stdout
    # the command to use: the kinetics group, 3 classes, and (no test labels) the final test on val.csv
    use = [line for line in stdout.splitlines() if line.startswith("use: ")]
    assert use == [f"use: python -m mvit_video.train data=kinetics data.path_to_data_dir={out.resolve()} "
                   f"data.path_prefix={(kinetics_raw / 'videos').resolve()} model.num_classes=3 "
                   f"data.test_list=val.csv"]


def test_prepare_kinetics_absolute_paths_and_given_classes(kinetics_raw: Path, capsys) -> None:
    out = kinetics_raw / "abs"
    classes = kinetics_raw / "classes.txt"
    classes.write_text("abseiling\nbaking cookies\npassing American football (in game)\nzumba\n")
    code, _, _ = _run_cli(prepare_kinetics.main, ["--train", str(kinetics_raw / "annotations" / "train.csv"),
                                                  "--videos", str(kinetics_raw / "videos"), "--out", str(out),
                                                  "--classes", str(classes), "--absolute"], capsys)
    assert code == 0
    lines = (out / "train.csv").read_text().splitlines()
    first_path, first_label = lines[0].rsplit(" ", 1)
    assert Path(first_path).is_absolute() and Path(first_path).is_file() and first_label == "3"
    assert (out / "classes.txt").read_text() == classes.read_text()
    assert not (out / "val.csv").exists()  # only the CSVs given are converted


def test_prepare_kinetics_user_errors(kinetics_raw: Path, capsys) -> None:
    videos = str(kinetics_raw / "videos")
    code, _, err = _run_cli(prepare_kinetics.main, ["--train", str(kinetics_raw / "nope.csv"), "--videos", videos,
                                                    "--out", str(kinetics_raw / "o")], capsys)
    assert code == 2 and err.startswith("error: ") and "nope.csv" in err and "Traceback" not in err
    bad = kinetics_raw / "bad.csv"
    bad.write_text(K_HEADER + "zumba,aaaaaaaaaaa,10,20,train\nzumba,aaaaaaaaaaa,10\n")
    code, _, err = _run_cli(prepare_kinetics.main, ["--train", str(bad), "--videos", videos,
                                                    "--out", str(kinetics_raw / "o")], capsys)
    assert code == 2 and f"{bad}:3:" in err and err.count("\n") == 1
    bad.write_text("a,b,c\n")
    code, _, err = _run_cli(prepare_kinetics.main, ["--train", str(bad), "--videos", videos,
                                                    "--out", str(kinetics_raw / "o")], capsys)
    assert code == 2 and f"{bad}:1:" in err and "youtube_id" in err
    # a label outside --classes names the row
    classes = kinetics_raw / "two.txt"
    classes.write_text("abseiling\npassing American football (in game)\n")
    code, _, err = _run_cli(prepare_kinetics.main, ["--train", str(kinetics_raw / "annotations" / "train.csv"),
                                                    "--videos", videos, "--out", str(kinetics_raw / "o"),
                                                    "--classes", str(classes)], capsys)
    assert code == 2 and "train.csv:2:" in err and "'zumba'" in err
    # the output directory must not be the annotation directory (train.csv would overwrite the official train.csv)
    code, _, err = _run_cli(prepare_kinetics.main, ["--annotations", str(kinetics_raw / "annotations"),
                                                    "--videos", videos, "--out", str(kinetics_raw / "annotations")],
                            capsys)
    assert code == 2 and "overwrite" in err


def test_prepare_kinetics_paths_with_the_separator_are_read_back(tmp_path: Path, capsys) -> None:
    """A space in a `{label}/` folder: the list is written (with a note) and the data loader's parser reads it."""
    from mvit_video.data.lists import read_list_file

    (tmp_path / "train.csv").write_text(K_HEADER + "air drumming,aaaaaaaaaaa,0,10,train\n")
    _tiny_video(tmp_path / "v" / "train" / "air drumming" / "aaaaaaaaaaa_000000_000010.mp4")
    argv = ["--train", str(tmp_path / "train.csv"), "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "o")]
    code, out, _ = _run_cli(prepare_kinetics.main, argv, capsys)
    assert code == 0 and "1 paths contain the separator" in out
    assert read_list_file(str(tmp_path / "o" / "train.csv")) == (["train/air drumming/aaaaaaaaaaa_000000_000010.mp4"],
                                                                  [0])
    code, out, _ = _run_cli(prepare_kinetics.main, argv + ["--separator", ","], capsys)
    assert code == 0 and "contain the separator" not in out
    assert (tmp_path / "o" / "train.csv").read_text() == "train/air drumming/aaaaaaaaaaa_000000_000010.mp4,0\n"


@pytest.mark.slow
def test_scripts_are_the_package_commands(kinetics_raw: Path, capsys, monkeypatch) -> None:
    """scripts/prepare_kinetics.py, prepare_ssv2.py and check_dataset.py are thin CLIs over mvit_video.data.prepare:
    the same command line prints what the package's main prints."""
    import runpy

    argv = ["--annotations", str(kinetics_raw / "annotations"), "--videos", str(kinetics_raw / "videos")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(SCRIPTS / "prepare_kinetics.py"), *argv, "--out",
                           str(kinetics_raw / "by_script")], capture_output=True, text=True, env=env, timeout=120)
    code, out, _ = _run_cli(prepare_kinetics.main, argv + ["--out", str(kinetics_raw / "by_package")], capsys)
    assert proc.returncode == code == 0, proc.stderr
    assert proc.stdout.replace("by_script", "by_package") == out

    def run_script(name: str, *args: str) -> tuple[int, str, str]:  # as `python scripts/<name>.py ARGS`
        monkeypatch.setattr(sys, "argv", [str(SCRIPTS / f"{name}.py"), *args])
        return _run_cli(lambda _: runpy.run_path(str(SCRIPTS / f"{name}.py"), run_name="__main__"), [], capsys)

    for name in ("prepare_kinetics", "prepare_ssv2", "check_dataset"):
        code, out, _ = run_script(name, "--help")
        assert code == 0 and out.startswith(f"usage: {name}.py")
    code, _, err = run_script("check_dataset", str(kinetics_raw / "nope.csv"))
    assert code == 2 and err.startswith("error: ") and "nope.csv" in err


# ------------------------------------------------------------------------------------------------- prepare_ssv2


def test_prepare_ssv2(tmp_path: Path, capsys) -> None:
    ann = tmp_path / "labels"
    ann.mkdir()
    (ann / "labels.json").write_text(json.dumps({"Pushing something from left to right": "1",
                                                 "Approaching something with your camera": "0"}))
    (ann / "train.json").write_text(json.dumps([
        {"id": "11", "label": "pushing a cup from left to right", "template": "Pushing [something] from left to right",
         "placeholders": ["a cup"]},
        {"id": "12", "label": "approaching a door with your camera",
         "template": "Approaching [something] with your camera", "placeholders": ["a door"]},
        {"id": "13", "label": "x", "template": "Pushing [something] from left to right", "placeholders": ["x"]},
    ]))
    (ann / "validation.json").write_text(json.dumps([
        {"id": "21", "label": "y", "template": "Approaching [something] with your camera", "placeholders": ["y"]}]))
    (ann / "test.json").write_text(json.dumps([{"id": "31"}, {"id": "32"}]))
    vids = tmp_path / "20bn-something-something-v2"
    for i, vid in enumerate(["11", "12", "21", "31"]):
        _tiny_video(vids / f"{vid}.webm", i)
    out = tmp_path / "lists"
    code, stdout, _ = _run_cli(prepare_ssv2.main, ["--annotations", str(ann), "--videos", str(vids),
                                                   "--out", str(out)], capsys)
    assert code == 0
    assert (out / "classes.txt").read_text().splitlines() == ["Approaching something with your camera",
                                                              "Pushing something from left to right"]
    assert (out / "train.csv").read_text() == "11.webm 1\n12.webm 0\n"
    assert (out / "val.csv").read_text() == "21.webm 0\n"
    assert (out / "test_unlabeled.txt").read_text() == "31.webm\n"
    assert (out / "missing_train.txt").read_text() == "13\n"
    assert (out / "missing_test.txt").read_text() == "32\n"
    assert not (out / "missing_val.txt").exists()
    assert "train: 2/3 videos found" in stdout
    assert (out / "test.csv").read_text() == "21.webm 0\n"  # validation: SSv2's test labels are not public
    assert f"use: python -m mvit_video.train data=ssv2 data.path_to_data_dir={out.resolve()} " in stdout

    # a folder of lists without test.csv (written before it was) is a missing list, named, not a json layout
    (out / "test.csv").unlink()
    cfg = make_cfg("ssv2", "none", {"data.path_to_data_dir": str(out), "data.path_prefix": str(vids)})
    from mvit_video.data import build_dataset
    from mvit_video.utils.errors import UserError

    with pytest.raises(UserError, match=r"test.csv: not found \(the folder has train.csv, val.csv\).*data.test_list"):
        build_dataset(cfg, "test")

    # user mistakes: broken json (file:line), unknown template
    (ann / "validation.json").write_text('[\n {"id": "21",\n "template": }\n]')
    code, _, err = _run_cli(prepare_ssv2.main, ["--annotations", str(ann), "--videos", str(vids),
                                                "--out", str(out)], capsys)
    assert code == 2 and f"{ann / 'validation.json'}:3:" in err and "Traceback" not in err
    (ann / "validation.json").write_text(json.dumps([{"id": "21", "template": "Dancing with [something]"}]))
    code, _, err = _run_cli(prepare_ssv2.main, ["--annotations", str(ann), "--videos", str(vids),
                                                "--out", str(out)], capsys)
    assert code == 2 and "Dancing with something" in err and "entry 0" in err


@pytest.mark.slow
def test_prepare_ssv2_extract_frames_gives_the_webm_grid(tmp_path: Path, capsys) -> None:
    """--extract-frames writes PySlowFast's layout {id}/{id}_%06d.jpg at 30 fps; data.dataset=ssv2 reads a folder
    as one video, with the frames the 30 fps grid of the webm gives."""
    from mvit_video.data import build_dataset
    from mvit_video.data.clips import open_reader
    from mvit_video.data.decoding import VideoDecodeError
    from mvit_video.data.decoding import FrameFolderReader

    ann = tmp_path / "labels"
    ann.mkdir()
    (ann / "labels.json").write_text(json.dumps({"Pushing something": "0", "Pulling something": "1"}))
    (ann / "train.json").write_text(json.dumps([{"id": "11", "template": "Pushing [something]"}]))
    (ann / "validation.json").write_text(json.dumps([{"id": "21", "template": "Pulling [something]"},
                                                     {"id": "22", "template": "Pulling [something]"}]))
    vids = tmp_path / "videos"
    frames = np.zeros((10, 32, 48, 3), np.uint8)
    for t in range(10):
        frames[t] = 16 * t  # frame id in the pixels
    for vid in ("11", "21"):
        vids.mkdir(exist_ok=True)
        write_video(vids / f"{vid}.webm", frames, fps=12.0)
    out, frame_dir = tmp_path / "lists", tmp_path / "frames"
    code, stdout, _ = _run_cli(prepare_ssv2.main, ["--annotations", str(ann), "--videos", str(vids), "--out",
                                                   str(out), "--extract-frames", str(frame_dir), "--workers", "1"],
                               capsys)  # fmt: skip
    assert code == 0 and "extracted 2/2 videos" in stdout
    assert (out / "train.csv").read_text() == "11 0\n" and (out / "val.csv").read_text() == "21 1\n"
    assert (out / "missing_val.txt").read_text() == "22\n"
    written = sorted(p.name for p in (frame_dir / "21").iterdir())
    assert len(written) == 25 and written[0] == "21_000001.jpg" and written[-1] == "21_000025.jpg"
    cfg = make_cfg("ssv2", "none", {"data.path_to_data_dir": str(out), "data.path_prefix": str(frame_dir),
                                    "data.num_frames": 4, "data.train_crop_size": 32, "data.test_crop_size": 32,
                                    "test.num_ensemble_views": 1, "test.num_spatial_crops": 1})  # fmt: skip
    val = build_dataset(cfg, "val")
    with open_reader(val.full_paths[0], val.spec) as reader:
        assert (reader.num_frames, reader.fps) == (25, 30.0)
    from_frames = val[0]["views"]
    webm = build_dataset(cfg, "val")
    webm.full_paths = [str(vids / "21.webm")]
    torch.testing.assert_close(from_frames, webm[0]["views"], atol=0.1, rtol=0)  # JPEG vs VP9 loss only
    ids = (from_frames[0, 0, :, 16, 16] * 0.225 + 0.45) * 255 / 16
    assert ids.round().int().tolist() == [1, 3, 6, 8]  # grid frames 6, 12, 18 ... -> source frames
    probe = check_dataset.probe_video(str(frame_dir / "21"))  # the doctor reads frame folders too
    assert probe.ok and (probe.num_frames, probe.fps) == (25, 30.0)
    (frame_dir / "empty").mkdir()
    with pytest.raises(VideoDecodeError, match="empty: no .jpg frames"):
        FrameFolderReader(str(frame_dir / "empty"))


# ------------------------------------------------------------------------------------------------ class lists


def test_shipped_kinetics400_classes_match_torchvision_and_sorted_convention() -> None:
    from torchvision.models.video import MViT_V2_S_Weights

    shipped = (REPO / "data_lists" / "kinetics400_classes.txt").read_text().splitlines()
    assert shipped == list(MViT_V2_S_Weights.KINETICS400_V1.meta["categories"])
    assert shipped == sorted(shipped) and len(shipped) == 400


# ------------------------------------------------------------------------------------------------ check_dataset


@pytest.mark.parametrize("workers", [0, 2])
def test_check_dataset_finds_bad_videos_and_writes_clean_list(video_dir: Path, tmp_path: Path, capsys,
                                                              workers: int) -> None:
    names = ["a.mp4", "empty.mp4", "b.mp4", "garbage.mp4", "c.webm", "not_there.mp4", "short.mp4"]
    listing = tmp_path / "train.csv"
    listing.write_text("".join(f"{name},{i % 3}\n" for i, name in enumerate(names)))  # relative paths + prefix
    clean = tmp_path / "clean.csv"
    classes = tmp_path / "classes.txt"
    classes.write_text("x\ny\nz\nnever\n")
    code, out, _ = _run_cli(check_dataset.main, [str(listing), "--separator", ",", "--prefix", str(video_dir),
                                                 "--workers", str(workers), "--write-clean", str(clean),
                                                 "--classes", str(classes)], capsys)
    assert code == 1  # some bad
    bad_lines = [line for line in out.splitlines() if line.startswith("BAD ")]
    assert [line.split(":")[0] for line in bad_lines] == [f"BAD {video_dir / n}" for n in
                                                          ("empty.mp4", "garbage.mp4", "not_there.mp4")]
    assert "empty file" in bad_lines[0] and "no such file" in bad_lines[2] and f"{listing}:4" in bad_lines[1]
    assert "7 videos, 4 readable, 3 unreadable" in out
    assert clean.read_text() == "a.mp4,0\nb.mp4,2\nc.webm,1\nshort.mp4,0\n"
    # stats over the good videos: fixture lengths 60/90/48/10 frames at 30/25/30/30 fps, all 80x64
    stats = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    assert stats["frames"][2] == "10" and stats["frames"][6] == "90"
    assert stats["fps"][2] == "25.00" and stats["fps"][6] == "30.00"
    assert stats["height"][2] == "64" and stats["width"][6] == "80"
    assert "1 of 4 classes have no video: 3 (never)" in out

    # the cleaned list is all good: exit 0
    code, out, _ = _run_cli(check_dataset.main, [str(clean), "--separator", ",", "--prefix", str(video_dir),
                                                 "--workers", "0"], capsys)
    assert code == 0 and "4 readable, 0 unreadable" in out


def test_check_dataset_user_errors(tmp_path: Path, capsys) -> None:
    code, _, err = _run_cli(check_dataset.main, [str(tmp_path / "nope.csv")], capsys)
    assert code == 2 and err.startswith("error: ") and "nope.csv" in err
    listing = tmp_path / "l.csv"
    listing.write_text("a.mp4 0\nb.mp4 one\n")
    code, _, err = _run_cli(check_dataset.main, [str(listing)], capsys)
    assert code == 2 and f"{listing}:2:" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- benchmark_data's baselines


def _load_script(name: str):
    """scripts/<name>.py as a module (a user tool, not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"mvit_video_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


benchmark_data = _load_script("benchmark_data")


def test_benchmark_pytorchvideo_baseline_decodes_equivalent_clips(video_dir: Path, tmp_path: Path) -> None:
    """The pytorchvideo parts the benchmark compares against import and give clips shaped like ours."""
    clip = benchmark_data.ClipSettings(num_frames=4, sampling_rate=2, crop=32, views=2, crops=3)
    listing = tmp_path / "list.csv"
    listing.write_text(f"{video_dir / 'a.mp4'} 1\n{video_dir / 'b.mp4'} 0\n")
    train = benchmark_data.pytorchvideo_dataset(listing, clip, "train")
    item = next(iter(train))
    assert item["video"].shape == (3, 4, 32, 32) and item["video"].dtype == torch.float32
    assert item["label"] in (0, 1)
    # normalised: (x/255 - 0.45)/0.225 lies in [-2, 2.45]
    assert -2.01 <= float(item["video"].min()) and float(item["video"].max()) <= 2.45

    test = list(benchmark_data.pytorchvideo_dataset(listing, clip, "test"))
    assert len(test) == 2 * clip.views * clip.crops  # K temporal x S spatial views per video, videos in order
    assert all(t["video"].shape == (3, 4, 32, 32) for t in test)
    # the three spatial crops of one temporal clip differ (left / center / right of the 80-wide frame)
    assert not torch.equal(test[0]["video"], test[2]["video"])

    # without transforms: pytorchvideo's raw clip, float 0..255 [3, frames in the clip span, H, W]
    raw = next(iter(benchmark_data.pytorchvideo_dataset(listing, clip, "train", transform=False)))
    span = round(clip.clip_seconds * 30)
    assert raw["video"].shape[0] == 3 and abs(raw["video"].shape[1] - span) <= 1 and raw["video"].shape[2:] == (64, 80)


def test_benchmark_uniform_temporal_subsample_matches_pytorchvideo_definition() -> None:
    video = torch.arange(10).view(1, 10, 1, 1).float()
    out = benchmark_data.uniform_temporal_subsample(video, 4)
    assert out.flatten().tolist() == [0.0, 3.0, 6.0, 9.0]  # linspace(0, 9, 4) truncated


def test_benchmark_raw_bound_decodes_the_training_clip_frames(video_dir: Path) -> None:
    clip = benchmark_data.ClipSettings(num_frames=4, sampling_rate=2, views=3)
    raw = benchmark_data.RawDecode([str(video_dir / "a.mp4")], clip, "train", "pyav")
    frames = raw[0]
    assert frames.shape == (4, 64, 80, 3) and frames.dtype == torch.uint8
    test = benchmark_data.RawDecode([str(video_dir / "a.mp4")], clip, "test", "pyav")[0]
    assert test.shape[1:] == (64, 80, 3) and 4 <= test.shape[0] <= 12  # the union of 3 views' frames


@pytest.mark.slow
def test_benchmark_runs_end_to_end_on_a_tiny_set(tmp_path: Path, capsys) -> None:
    """Every row of the benchmark (ours with and without transforms, raw bound, pytorchvideo) runs and is
    reported, with our build_dataset/build_loader as training builds them."""
    code = benchmark_data.main([
        "--num-videos", "2", "--seconds", "1", "--size", "64x48", "--num-frames", "4", "--sampling-rate", "2",
        "--crop", "32", "--views", "2", "--crops", "3", "--batch", "2", "--workers", "0", "--rounds", "1",
        "--train-clips", "2", "--test-videos", "1", "--min-seconds", "0", "--list-repeats", "1",
        "--cache-dir", str(tmp_path), "--decoder", "pyav",
    ])
    out = capsys.readouterr().out
    assert code == 0
    table = [line for line in out.splitlines() if line.startswith("| train |") or line.startswith("| test |")]
    assert len(table) == 2
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 8 and all(float(x) > 0 for x in cells[2:6])


@pytest.mark.parametrize("crops", [1, 3])
def test_benchmark_pytorchvideo_test_transform_equals_ours(crops: int) -> None:
    """The baseline's test view transform computes what our test views (data.transforms.multi_view_crops) are."""
    from mvit_video.data.transforms import multi_view_crops

    clip = benchmark_data.ClipSettings(num_frames=4, crop=32, crops=crops, jitter_scales=(40, 48))
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(4, 48, 64, 3), dtype=np.uint8))
    ours = multi_view_crops(frames, [range(4)], clip.crop, crops, clip.mean, clip.std, clip.test_short_side)
    tf = benchmark_data.PTVTestTransform(clip)
    for s in range(crops):
        theirs = tf({"video": frames.permute(3, 0, 1, 2).float(), "aug_index": s, "label": 0})["video"]
        assert torch.allclose(theirs, ours[s], atol=1e-4)
