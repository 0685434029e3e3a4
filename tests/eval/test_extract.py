"""python -m mvit_video.extract on real tiny videos: Predictor.features per row, bad videos listed, 2 processes."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp


def _read(out: Path) -> tuple[np.ndarray, list[dict]]:
    rows = list(csv.DictReader(out.with_name(out.name + ".index.csv").read_text().splitlines()))
    return np.load(out.with_name(out.name + ".npy")), rows


@pytest.fixture(scope="module")
def single(tmp_path_factory, eval_data, tiny_checkpoint) -> Path:
    """Embeddings of val.csv (5 good videos, garbage.mp4, a missing file) with 2x1 views in one process."""
    from mvit_video.extract import main

    out = tmp_path_factory.mktemp("extract") / "feats"
    assert main(["--checkpoint", str(tiny_checkpoint), "--list", str(eval_data / "val.csv"), "--prefix",
                 str(eval_data / "videos"), "--out", str(out), "--views", "2x1", "--batch-size", "3", "--workers",
                 "0", "--device", "cpu"]) == 0
    return out


@pytest.mark.slow
def test_extract_matches_predictor_features(single, eval_data, tiny_checkpoint, capsys):
    from mvit_video import Predictor

    features, rows = _read(single)
    assert features.dtype == np.float32 and features.shape == (5, 32)  # width 16 x dim_mul 2
    assert [r["video"] for r in rows] == [f"v{i}.mp4" for i in range(5)]
    assert [r["label"] for r in rows] == ["0", "1", "2", "0", "1"]
    # bad videos are listed, not fatal
    failed = single.with_name("feats.failed.txt").read_text().splitlines()
    assert failed == ["garbage.mp4", "missing.mp4"]
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", views="2x1")
    for row, vector in zip(rows, features):
        expected = predictor.features(eval_data / "videos" / row["video"])
        assert np.abs(vector - expected.numpy()).max() < 1e-5


def _worker(rank: int, world: int, port: int, argv: list[str]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from mvit_video.extract import main

    main(argv)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # spawns a 2-process gloo group
def test_two_processes_each_video_once(single, tmp_path, eval_data, tiny_checkpoint):
    out = tmp_path / "ddp"
    argv = ["--checkpoint", str(tiny_checkpoint), "--list", str(eval_data / "val.csv"), "--prefix",
            str(eval_data / "videos"), "--out", str(out), "--views", "2x1", "--batch-size", "2", "--workers", "0",
            "--device", "cpu", "--no-progress"]
    mp.spawn(_worker, args=(2, _free_port(), argv), nprocs=2, join=True)
    features, rows = _read(out)
    ref_features, ref_rows = _read(single)
    assert rows == ref_rows  # each video once, in list order
    assert np.abs(features - ref_features).max() < 1e-5
    assert out.with_name("ddp.failed.txt").read_text().splitlines() == ["garbage.mp4", "missing.mp4"]


def test_unlabelled_list_and_bad_list(tmp_path, eval_data, tiny_checkpoint, capsys):
    from mvit_video.extract import main

    videos = tmp_path / "videos.txt"
    videos.write_text(f"{eval_data / 'videos' / 'v1.mp4'}\n\n{eval_data / 'videos' / 'v3.mp4'}\n")
    out = tmp_path / "plain.npy"  # a .npy suffix is taken as the prefix
    assert main(["--checkpoint", str(tiny_checkpoint), "--list", str(videos), "--out", str(out), "--views", "1x1",
                 "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    features, rows = _read(tmp_path / "plain")
    assert features.shape == (2, 32) and [r["label"] for r in rows] == ["", ""]
    assert not (tmp_path / "plain.failed.txt").exists()
    assert "2 videos x 32 features" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tiny_checkpoint), "--list", str(tmp_path / "nope.txt"), "--out", str(out)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope.txt'}: list file not found"
