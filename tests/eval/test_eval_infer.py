"""mvit-infer (mvit_video.infer) on generated videos (names, JSON, windows) and on bad inputs (one clean error line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def infer():
    """mvit_video.infer (in-process runs are much faster than subprocesses)."""
    import mvit_video.infer

    return mvit_video.infer


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvit_video.infer", *args], cwd=REPO, capture_output=True, text=True,
                          check=False,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_text_output_names_and_probabilities(infer, eval_data, tiny_checkpoint, capsys, class_names):
    video = eval_data / "videos" / "v0.mp4"
    assert infer.main(["--checkpoint", str(tiny_checkpoint), "--topk", "2", "--views", "2x3", str(video)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{video}  (0.7 s, 2x3 views)")
    ranked = [line.split() for line in out[1:3]]
    assert [r[0] for r in ranked] == ["1.", "2."] and all(r[1] in class_names for r in ranked)
    probs = [float(r[2]) for r in ranked]
    assert probs[0] >= probs[1] and 0 < sum(probs) <= 1.0 + 1e-3


@pytest.mark.slow
def test_json_with_windows(infer, eval_data, tiny_checkpoint, capsys, class_names):
    videos = [eval_data / "videos" / "v1.mp4", eval_data / "videos" / "v2.mp4"]
    code = infer.main(["--checkpoint", str(tiny_checkpoint), "--json", "--window", "0.25", "--views", "1x1",
                       *map(str, videos)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)  # one JSON document for all videos
    assert doc["views"] == [1, 1] and doc["errors"] == []
    assert [v["video"] for v in doc["videos"]] == [str(v) for v in videos]
    for v in doc["videos"]:
        assert len(v["topk"]) == 3  # --topk 5 but only 3 classes
        assert {e["name"] for e in v["topk"]} == set(class_names)
        assert sum(e["prob"] for e in v["topk"]) == pytest.approx(1.0, abs=1e-4)
        # 20 frames at 30 fps in windows of 0.25 s (8 frames): 0-8, 8-16, 16-20
        assert [(w["start"], w["end"]) for w in v["windows"]] == [(0.0, 0.267), (0.267, 0.533), (0.533, 0.667)]
        assert all(w["topk"][0]["name"] in class_names for w in v["windows"])


def test_text_timeline_honours_topk(infer, eval_data, tiny_checkpoint, capsys, class_names):
    video = eval_data / "videos" / "v4.mp4"
    assert infer.main(["--checkpoint", str(tiny_checkpoint), "--topk", "2", "--views", "1x1", "--window", "0.25",
                       str(video)]) == 0
    captured = capsys.readouterr()
    assert "1x1 views (overridden: views)" in captured.err  # the clip settings in use, and where they come from
    out = captured.out.splitlines()
    timeline = out[out.index("  timeline:") + 1:]
    assert len(timeline) == 3  # 20 frames in windows of 8
    for line in timeline:
        classes = line.split("s: ", 1)[1].split(", ")
        assert len(classes) == 2 and all(c.split()[0] in class_names for c in classes)


@pytest.mark.parametrize("window", ["inf", "nan", "0", "-1"])
def test_bad_window_is_one_error_line(infer, eval_data, tiny_checkpoint, capsys, window):
    with pytest.raises(SystemExit) as exit_info:
        infer.main(["--checkpoint", str(tiny_checkpoint), "--window", window, str(eval_data / "videos" / "v0.mp4")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --window must be a positive, finite number of seconds") and "\n" not in err


@pytest.mark.slow  # a subprocess run of the script
def test_bad_inputs_give_one_error_line(eval_data, tiny_checkpoint):
    good = eval_data / "videos" / "v3.mp4"
    garbage = eval_data / "videos" / "garbage.mp4"
    missing = eval_data / "videos" / "nope.mp4"
    proc = run_script("--checkpoint", str(tiny_checkpoint), str(garbage), str(good), str(missing))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert errors[0].startswith(f"error: {garbage}: ") and errors[1] == f"error: {missing}: no such file"
    assert str(good) in proc.stdout  # the good video is still classified


def test_not_a_checkpoint(infer, eval_data, capsys):
    with pytest.raises(SystemExit) as exit_info:
        infer.main(["--checkpoint", str(eval_data / "test.csv"), str(eval_data / "videos" / "v0.mp4")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {eval_data / 'test.csv'}") and len(err.splitlines()) == 1
