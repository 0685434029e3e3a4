"""Issue 20 item 1: what `prepare_ssv2` prints as the command to use runs as printed, for both layouts (webm
videos, and `--extract-frames` JPEG folders), on small SSv2-format data written here (official-style json files,
real VP9 webm videos at SSv2's 12 fps); and so does `prepare_kinetics`'s (official-style CSVs without test labels).
The printed words are run unchanged through a shell; only overrides that shrink the run (the tiny network, 4
frames of 32 px, one epoch) are appended after them."""

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
from mvit_video.data.prepare import kinetics as prepare_kinetics
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


def _kinetics_raw(root: Path) -> tuple[Path, Path]:
    """Official-style Kinetics CSVs (train, validate; the test CSV without labels, as K600/K700) and videos."""
    ann, vids = root / "annotations", root / "videos"
    ann.mkdir()
    vids.mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    train = [("zumba" if i % 2 else "abseiling", f"train{i:06d}") for i in range(4)]
    val = [("abseiling", "val00000000"), ("zumba", "val00000001")]
    (ann / "train.csv").write_text(header + "".join(f"{c},{y},0,10,train\n" for c, y in train))
    (ann / "validate.csv").write_text(header + "".join(f"{c},{y},0,10,val\n" for c, y in val))
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\ntest0000000,0,10,test\n")
    for seed, (_, yid) in enumerate(train + val + [("", "test0000000")]):
        write_video(vids / f"{yid}_000000_000010.mp4", indexed_frames(20, height=48, width=64, seed=seed), fps=30.0)
    return ann, vids


@pytest.mark.slow
@pytest.mark.parametrize("dataset, layout", [("ssv2", "webm"), ("ssv2", "frames"), ("kinetics", "mp4")])
def test_prepare_then_run_the_printed_command(tmp_path: Path, capsys, dataset: str, layout: str) -> None:
    out = tmp_path / "lists"
    if dataset == "ssv2":
        ann, vids = _ssv2_raw(tmp_path)
        argv = ["--annotations", str(ann), "--videos", str(vids), "--out", str(out)]
        if layout == "frames":
            argv += ["--extract-frames", str(tmp_path / "frames"), "--workers", "1"]
        assert prepare_ssv2.main(argv) == 0
    else:
        ann, vids = _kinetics_raw(tmp_path)
        assert prepare_kinetics.main(["--annotations", str(ann), "--videos", str(vids), "--out", str(out)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("use: ")]
    assert len(printed) == 1
    command = printed[0][len("use: "):]
    assert shlex.split(command)[:4] == ["python", "-m", "mvit_video.train", f"data={dataset}"]
    assert "model.num_classes=2" in command  # 2 classes in the annotations, not the group's 174 / 400
    if dataset == "ssv2":  # the test split reads the validation videos (SSv2's test labels are not public)
        assert (out / "test.csv").read_text() == (out / "val.csv").read_text() != ""
    else:  # no labelled test CSV: the printed command tests on the validation list
        assert not (out / "test.csv").exists() and "data.test_list=val.csv" in command

    run_dir = tmp_path / "run"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "-c", f"{command} {shlex.join([*SMALL, f'output_dir={run_dir}'])}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tests = [m for m in metrics if m.get("split") == "test"]
    assert len(tests) == 1, metrics
    # the validation videos, all decoded, with the group's test views (data=ssv2 brings SSv2's 1 x 3)
    views = [1, 3] if dataset == "ssv2" else [2, 1]
    assert (tests[0]["videos"], tests[0]["failed_videos"], tests[0]["views"]) == (2, 0, views), tests[0]


@pytest.mark.slow  # a Hydra compose: ~0.4 s
def test_printed_command_quotes_paths_for_the_shell_and_hydra(tmp_path: Path) -> None:
    """Folders with spaces, commas (a Hydra sweep), brackets, quotes or `${` come back unchanged from the printed
    command: shell words (shlex) whose values Hydra reads as the same strings."""
    from mvit_video.config import compose
    from mvit_video.data.prepare.common import hydra_value, train_command

    out, videos = tmp_path / "my lists,v2", tmp_path / "it's [raw] ${HOME}"
    words = shlex.split(train_command("kinetics", out, videos, 3, 400, separator=","))
    assert words[:4] == ["python", "-m", "mvit_video.train", "data=kinetics"] and words[-1] == "model.num_classes=3"
    cfg = compose(words[3:])
    assert (cfg.data.path_to_data_dir, cfg.data.path_prefix) == (str(out.resolve()), str(videos.resolve()))
    assert cfg.data.path_label_separator == ","
    assert hydra_value("/data/k400/videos_320p_k30") == "/data/k400/videos_320p_k30"  # plain paths stay readable
