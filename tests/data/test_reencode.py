"""Re-encoding for fast decodes (mvit_video.data.prepare.reencode, `--reencode-short-side` of the prepare commands):
real encodes of small generated videos, and real decodes of the copies (size, keyframe interval, frame count and
duration, content), through the prepare commands: lists name the copies, originals untouched, resumable, bad files
listed and not fatal."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import av
import numpy as np
import pytest
from tiny import indexed_frames

from mvit_video.data.decoding import open_video
from mvit_video.data.encode import write_video
from mvit_video.data.prepare import kinetics as prepare_kinetics
from mvit_video.data.prepare import ssv2 as prepare_ssv2
from mvit_video.data.prepare.reencode import (
    ReencodeSettings,
    check_reencode_dir,
    reencode_all,
    reencode_video,
    scaled_size,
)
from mvit_video.utils.errors import UserError


def _probe(path: Path) -> tuple[int, int, int, float, float, list[int]]:
    """(width, height, decoded frames, fps, duration s, indices of the keyframes in presentation order)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        packets = sorted((p for p in c.demux(s) if p.size), key=lambda p: p.pts)
        keys = [i for i, p in enumerate(packets) if p.is_keyframe]
        duration = float(s.duration * s.time_base)
        fps = float(s.average_rate)
    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
    return s.width, s.height, n, fps, duration, keys


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_scaled_size():
    assert scaled_size(1280, 720, 320) == (568, 320)  # 568.9 -> nearest even
    assert scaled_size(720, 1280, 320) == (320, 568)  # portrait: the short side is the width
    assert scaled_size(340, 256, 320) == (340, 256)  # never upscaled
    assert scaled_size(341, 255, 320) == (340, 256)  # odd sizes made even for yuv420p (half to even)


@pytest.mark.parametrize("suffix, fps", [(".mp4", 25.0), (".webm", 12.0)])
def test_reencode_video_keeps_frames_rate_and_duration(tmp_path: Path, suffix: str, fps: float):
    frames = indexed_frames(23, height=64, width=96, seed=3)
    src = tmp_path / f"src{suffix}"
    write_video(src, frames, fps=fps)
    before = src.read_bytes()
    assert reencode_video(src, tmp_path / "copy" / "dst.mp4", ReencodeSettings(short_side=32, keyint=5)) == 23
    assert src.read_bytes() == before
    w, h, n, got_fps, duration, keys = _probe(tmp_path / "copy" / "dst.mp4")
    assert (w, h, n, got_fps) == (48, 32, 23, fps)
    assert duration == pytest.approx(23 / fps, abs=1e-3)
    assert keys == [0, 5, 10, 15, 20]  # a keyframe every 5 frames, none in between
    assert not list((tmp_path / "copy").glob("*.part"))
    # the frames, in order: each decoded frame is closest to the source frame of its index (3 px shift per frame)
    with open_video(tmp_path / "copy" / "dst.mp4", "pyav") as reader:
        got = reader.get_frames(list(range(23))).numpy().astype(np.float32)
    small = np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").reformat(width=48, height=32).to_ndarray(
        format="rgb24") for f in frames]).astype(np.float32)
    err = np.abs(got[:, None] - small[None]).mean(axis=(2, 3, 4))  # [decoded, source]
    assert err.argmin(axis=1).tolist() == list(range(23))


def test_reencode_all_is_resumable_and_lists_bad_files(tmp_path: Path, capsys):
    good, bad = tmp_path / "in" / "good.mp4", tmp_path / "in" / "bad.mp4"
    good.parent.mkdir()
    write_video(good, indexed_frames(12, height=32, width=48), fps=30.0)
    bad.write_bytes(b"not a video" * 100)
    jobs = [(good, tmp_path / "out" / "good.mp4"), (bad, tmp_path / "out" / "bad.mp4")]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "good.mp4.part").write_bytes(b"left by an interrupted run")
    results = reencode_all(jobs, ReencodeSettings(32, 4), workers=0)
    assert [r.status for r in results] == ["done", "failed"]
    assert results[1].error and not (tmp_path / "out" / "bad.mp4").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4"]  # no partial file left
    err = capsys.readouterr().err
    assert f"cannot re-encode {bad}" in err and len(err.strip().splitlines()) == 1
    mtime = (tmp_path / "out" / "good.mp4").stat().st_mtime_ns
    again = reencode_all(jobs, ReencodeSettings(32, 4), workers=0)
    assert [r.status for r in again] == ["skipped", "failed"]
    assert (tmp_path / "out" / "good.mp4").stat().st_mtime_ns == mtime
    assert "1 done by an earlier run" in capsys.readouterr().out
    # progress: a line every progress_every_s (a clock that advances 20 s per reading: after each video)
    (tmp_path / "out" / "good.mp4").unlink()
    reencode_all(jobs, ReencodeSettings(32, 4), workers=0, clock=itertools.count(0, 20).__next__)
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("re-encoded ")]
    assert [line.split(",")[0] for line in progress] == ["re-encoded 1/2 (0 failed)", "re-encoded 2/2 (1 failed)",
                                                         "re-encoded 2/2 (1 failed)"]


K_HEADER = "label,youtube_id,time_start,time_end,split\n"


@pytest.mark.slow
def test_prepare_kinetics_reencodes_in_parallel_and_lists_the_copies(tmp_path: Path, capsys):
    ann, vids = tmp_path / "annotations", tmp_path / "videos"
    ann.mkdir()
    (ann / "train.csv").write_text(K_HEADER + "zumba,aaaaaaaaaaa,0,10,train\n" + "abseiling,bbbbbbbbbbb,0,10,train\n"
                                   + "zumba,ccccccccccc,0,10,train\n")
    (ann / "validate.csv").write_text(K_HEADER + "abseiling,ddddddddddd,0,10,val\n")
    (vids / "train" / "zumba").mkdir(parents=True)
    write_video(vids / "train" / "zumba" / "aaaaaaaaaaa_000000_000010.mp4",
                indexed_frames(20, height=96, width=128, seed=0), fps=30.0)
    (vids / "bbbbbbbbbbb.mp4").write_bytes(b"garbage" * 200)  # undecodable: reported, listed as missing
    write_video(vids / "ccccccccccc.webm", indexed_frames(15, height=64, width=48, seed=1), fps=15.0)
    write_video(vids / "ddddddddddd.mp4", indexed_frames(10, height=48, width=64, seed=2), fps=30.0)
    originals = _digest(vids)
    out = tmp_path / "lists"
    argv = ["--annotations", str(ann), "--videos", str(vids), "--out", str(out), "--reencode-short-side", "32",
            "--keyint", "4", "--workers", "2"]
    assert prepare_kinetics.main(argv) == 0
    stdout = capsys.readouterr().out
    copies = out / "videos_32p_k4"
    assert (out / "train.csv").read_text() == "train/zumba/aaaaaaaaaaa_000000_000010.mp4 1\nccccccccccc.mp4 1\n"
    assert (out / "val.csv").read_text() == "ddddddddddd.mp4 0\n"
    assert _probe(copies / "ccccccccccc.mp4")[:5] == (32, 42, 15, 15.0, 1.0)  # 48x64 -> short side 32
    assert _probe(copies / "train" / "zumba" / "aaaaaaaaaaa_000000_000010.mp4")[5] == [0, 4, 8, 12, 16]
    failed = (out / "reencode_failed.txt").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith(f"{vids / 'bbbbbbbbbbb.mp4'}\t")
    assert "bbbbbbbbbbb" in (out / "missing_train.txt").read_text()
    assert _digest(vids) == originals  # originals untouched, nothing written beside them
    assert f"data.path_prefix={copies.resolve()}" in stdout and "3 new, 0 from an earlier run, 1 failed" in stdout

    # resumable: a second run re-encodes nothing
    stamps = {p: p.stat().st_mtime_ns for p in copies.rglob("*.mp4")}
    assert prepare_kinetics.main(argv) == 0
    assert "0 new, 3 from an earlier run, 1 failed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in copies.rglob("*.mp4")} == stamps


def test_reencode_options_are_checked(tmp_path: Path, capsys):
    (tmp_path / "videos").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "labels.json").write_text(json.dumps({"Pushing something": "0"}))
    base = ["--annotations", str(tmp_path / "labels"), "--videos", str(tmp_path / "videos"), "--out",
            str(tmp_path / "out")]
    for extra, message in [
        (["--reencode-short-side", "33"], "--reencode-short-side: expected an even number"),
        (["--reencode-short-side", "320", "--keyint", "0"], "--keyint: expected a positive"),
        (["--reencode-short-side", "320", "--reencode-dir", str(tmp_path / "videos" / "small")], "inside --videos"),
        (["--reencode-short-side", "320", "--extract-frames", str(tmp_path / "f")], "choose one"),
    ]:
        with pytest.raises(SystemExit) as e:
            prepare_ssv2.main(base + extra)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(UserError, match="inside --videos"):
        check_reencode_dir(tmp_path / "videos", tmp_path / "videos")


@pytest.mark.slow
def test_prepare_ssv2_reencoded_copies_sample_the_same_frames(tmp_path: Path, capsys):
    """SSv2 webm (12 fps) -> mp4 copies with every frame and the rate kept: the 30 fps grid, and so the segment
    indices, pick the same source frames from the copy as from the original."""
    from tiny import make_cfg

    from mvit_video.data import build_dataset

    ann, vids = tmp_path / "labels", tmp_path / "videos"
    ann.mkdir()
    vids.mkdir()
    (ann / "labels.json").write_text(json.dumps({"Pushing something": "0", "Pulling something": "1"}))
    (ann / "train.json").write_text(json.dumps([{"id": "11", "template": "Pushing [something]"}]))
    (ann / "validation.json").write_text(json.dumps([{"id": "21", "template": "Pulling [something]"}]))
    frames = np.zeros((10, 48, 64, 3), np.uint8)
    for t in range(10):
        frames[t] = 20 * t + 10  # frame id in the pixels
    for vid in ("11", "21"):
        write_video(vids / f"{vid}.webm", frames, fps=12.0)
    out = tmp_path / "lists"
    assert prepare_ssv2.main(["--annotations", str(ann), "--videos", str(vids), "--out", str(out),
                              "--reencode-short-side", "32", "--keyint", "6", "--workers", "0"]) == 0
    copies = out / "videos_32p_k6"
    assert (out / "val.csv").read_text() == "21.mp4 1\n" and (copies / "21.mp4").is_file()
    assert f"data.path_prefix={copies.resolve()}" in capsys.readouterr().out
    overrides = {"data.path_to_data_dir": str(out), "data.num_frames": 8, "data.train_crop_size": 32,
                 "data.test_crop_size": 32, "data.decoder": "pyav", "test.num_spatial_crops": 1}
    views = build_dataset(make_cfg("ssv2", "none", {**overrides, "data.path_prefix": str(copies)}), "val")[0]["views"]
    original = build_dataset(make_cfg("ssv2", "none", {**overrides, "data.path_prefix": str(vids)}), "val")
    original.full_paths = [str(vids / "21.webm")]

    def ids(views: "torch.Tensor") -> list[int]:  # the frame ids written into the pixels, from a normalised view
        return ((views[0, 0, :, 16, 16] * 0.225 + 0.45) * 255 - 10).div(20).round().int().tolist()

    # 10 frames at 12 fps = 25 on the 30 fps grid (0 0 1 1 1 2 2 2 3 3 4 4 4 5 5 6 6 7 7 7 8 8 8 9 9); the
    # segment middles 3i + 1 = 1, 4, ..., 22 show source frames
    assert ids(views) == ids(original[0]["views"]) == [0, 1, 2, 4, 5, 6, 7, 8]


@pytest.mark.slow
def test_benchmark_reencode_runs_end_to_end(tmp_path: Path, capsys):
    """scripts/benchmark_reencode.py on a tiny long-GOP video: both sources decoded with the same indices."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmark_reencode", Path(__file__).resolve().parents[2] / "scripts" / "benchmark_reencode.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--num-videos", "1", "--seconds", "2", "--size", "160x96", "--gop", "60", "--short-side", "48",
                       "--keyint", "6", "--frames", "4", "--rate", "2", "--clips", "2", "--decoders", "pyav",
                       "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "copies 80x48, keyframe every 6" in out and "ratio original/copy" in out
    assert _probe(tmp_path / "160x96_2s_30fps_g60" / "v0.mp4")[5] == [0]  # one keyframe: a long GOP
