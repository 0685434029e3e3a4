"""Issue 20 item 1: what `prepare_ssv2` prints as the command to use runs as printed, for both layouts (webm
videos, and `--extract-frames` JPEG folders), on small SSv2-format data written here (official-style json files,
real VP9 webm videos at SSv2's 12 fps). The printed words are run unchanged through a shell; only overrides that
shrink the run (the tiny network, 4 frames of 32 px, one epoch) are appended after them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import NETWORK, indexed_frames

from mvit_video.data.encode import write_video
from mvit_video.data.prepare import ssv2 as prepare_ssv2

# Appended to the printed command: sizes and length only (none of the keys it prints).
SMALL = [
    *NETWORK,
    "data.num_frames=4",
    "data.train_crop_size=32",
    "data.test_crop_size=32",
    "data.train_jitter_scales=[32,40]",
    "data.decoder=pyav",
    "data_loader.num_workers=0",
    "train.batch_size=2",
    "test.batch_size=2",
    "solver.max_epoch=1",
    "log_period=1",
]


def _ssv2_raw(root: Path) -> tuple[Path, Path]:
    """labels.json / train.json / validation.json / test.json and {id}.webm videos, as SSv2 ships them."""
    ann, vids = root / "labels", root / "20bn-something-something-v2"
    ann.mkdir()
    vids.mkdir()
    (ann / "labels.json").write_text(json.dumps({"Pushing something from left to right": "0",
                                                 "Pulling something from right to left": "1"}))
    templates = ["Pushing [something] from left to right", "Pulling [something] from right to left"]
    train = [{"id": str(10 + i), "label": "x", "template": templates[i % 2], "placeholders": ["x"]} for i in range(4)]
    val = [{"id": str(20 + i), "label": "y", "template": templates[i % 2], "placeholders": ["y"]} for i in range(2)]
    (ann / "train.json").write_text(json.dumps(train))
    (ann / "validation.json").write_text(json.dumps(val))
    (ann / "test.json").write_text(json.dumps([{"id": "30"}]))
    for seed, item in enumerate(train + val + [{"id": "30"}]):
        write_video(vids / f"{item['id']}.webm", indexed_frames(15, height=48, width=64, seed=seed), fps=12.0)
    return ann, vids


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["webm", "frames"])
def test_prepare_ssv2_then_run_the_printed_command(tmp_path: Path, capsys, layout: str) -> None:
    ann, vids = _ssv2_raw(tmp_path)
    out = tmp_path / "lists"
    argv = ["--annotations", str(ann), "--videos", str(vids), "--out", str(out)]
    if layout == "frames":
        argv += ["--extract-frames", str(tmp_path / "frames"), "--workers", "1"]
    assert prepare_ssv2.main(argv) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("use: ")]
    assert len(printed) == 1
    command = printed[0][len("use: "):]
    assert shlex.split(command)[:4] == ["python", "-m", "mvit_video.train", "data=ssv2"]
    assert "model.num_classes=2" in command  # 2 classes in labels.json, not the group's 174
    # the test split reads the validation videos (SSv2's test labels are not public)
    assert (out / "test.csv").read_text() == (out / "val.csv").read_text() != ""

    run_dir = tmp_path / "run"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "-c", f"{command} {shlex.join([*SMALL, f'output_dir={run_dir}'])}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tests = [m for m in metrics if m.get("split") == "test"]
    assert len(tests) == 1, metrics
    # the validation videos, all decoded, with SSv2's 1 x 3 test views (data=ssv2 brings them)
    assert (tests[0]["videos"], tests[0]["failed_videos"], tests[0]["views"]) == (2, 0, [1, 3]), tests[0]
