"""Names from files (class names, run folders) are printed with control characters escaped: an ANSI sequence in a
class name cannot clear the screen or rewrite lines of infer's or summary's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mvit_video.utils.text import printable

REPO = Path(__file__).resolve().parents[2]
EVIL = ["al\x1b[2Jpha", "be\rta\u202e", "gamma"]  # clear screen; carriage return and a right-to-left override


def test_printable_escapes_control_and_format_characters_only() -> None:
    assert printable("abseiling") == "abseiling"
    assert printable("café 東京 🙂 a b") == "café 東京 🙂 a b"  # any script, emoji and spaces stay
    assert printable("al\x1b[2Jpha") == "al\\x1b[2Jpha"
    assert printable("be\rta\u202e\n\t") == "be\\x0dta\\u202e\\x0a\\x09"
    assert printable(Path("a\x07b")) == "a\\x07b"


@pytest.mark.slow
def test_infer_escapes_class_names_and_json_keeps_them(tmp_path, eval_data, tiny_checkpoint) -> None:
    from mvit_video.checkpoint import load
    from mvit_video.utils.io import atomic_torch_save

    ckpt = load(tiny_checkpoint)
    ckpt["class_names"] = list(EVIL)
    evil = tmp_path / "evil.pyth"
    atomic_torch_save(ckpt, evil)
    video = str(eval_data / "videos" / "v0.mp4")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, str(REPO / "scripts" / "infer.py"), "--checkpoint", str(evil), "--topk", "3"]
    text = subprocess.run([*run, video], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert text.returncode == 0, text.stderr
    assert "\x1b" not in text.stdout and "\r" not in text.stdout and "\u202e" not in text.stdout
    assert "al\\x1b[2Jpha" in text.stdout and "be\\x0dta\\u202e" in text.stdout
    doc = subprocess.run([*run, "--json", video], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert doc.returncode == 0, doc.stderr
    assert "\x1b" not in doc.stdout  # JSON escapes them itself; the names read back unchanged
    assert {e["name"] for e in json.loads(doc.stdout)["videos"][0]["topk"]} == set(EVIL)


def test_summary_escapes_run_folder_names(tmp_path, capsys) -> None:
    from mvit_video.summary import main

    run = tmp_path / "run\x1b[2J"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"split": "train", "epoch": 1, "loss": 1.0, "top1": 50.0,
                                                   "lr": 0.1}) + "\n")
    assert main(["--no-plots", str(run)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "run\\x1b[2J" in out
