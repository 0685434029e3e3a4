"""The dataset registry (#22 item 2): a dataset is one `register_dataset` call (its builder and clip protocol);
data.dataset's choices, build_dataset, ClipSpec and Predictor all follow it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch
from omegaconf import OmegaConf
from tiny import kinetics_cfg, tiny_overrides

from mvit_video.data import build_dataset
from mvit_video.data.base import list_dataset
from mvit_video.data.lists import join_prefix
from mvit_video.settings import (DATASETS, SSV2_PROTOCOL, ClipProtocol, DataConfig, clip_protocol, dataset_entry,
                                 register_dataset)
from mvit_video.utils.errors import ConfigError, UserError

CONF = Path(__file__).resolve().parents[2] / "conf"


def build_toy(data, aug, spec, split, augment_on_device=False):
    """A dataset in a format of its own: `<split>.json` = [{"video": path, "label": int}] and classes.json."""
    root = data.path_to_data_dir
    classes_file = join_prefix(root, "classes.json")
    class_names = json.loads(Path(classes_file).read_text())
    list_path = join_prefix(root, f"{split}.json")
    entries = json.loads(Path(list_path).read_text())
    return list_dataset(data, aug, spec, split, list_path=list_path, paths=[e["video"] for e in entries],
                        labels=[e["label"] for e in entries], prefix=root,
                        class_names=class_names, classes_file=classes_file, augment_on_device=augment_on_device,
                        decode_short_side=data.train_jitter_scales[0])


@pytest.fixture
def toy(kinetics_list_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """The toy dataset registered (left/top 1-crop view, as SSv2) over the fixture videos; unregistered after."""
    register_dataset("toy", build_toy, ClipProtocol(one_crop_index=0))
    root = tmp_path / "toy"
    root.mkdir()
    (root / "classes.json").write_text(json.dumps(["even", "odd"]))
    for split in ("train", "val", "test"):
        rows = [line.rsplit(" ", 1) for line in (kinetics_list_dir / f"{split}.csv").read_text().splitlines()]
        (root / f"{split}.json").write_text(json.dumps([{"video": p, "label": int(label)} for p, label in rows]))
    try:
        yield root
    finally:
        DATASETS.pop("toy")


def test_builtin_datasets_are_registered_with_their_protocols():
    assert list(DATASETS) == ["kinetics", "ssv2", "synthetic"]
    for entry in DATASETS.values():
        assert callable(entry.load_builder()), entry.name  # each "module:function" names a function
    assert clip_protocol("ssv2") is SSV2_PROTOCOL and clip_protocol("kinetics") == ClipProtocol()
    assert clip_protocol("synthetic") == ClipProtocol()
    assert clip_protocol("charades") == ClipProtocol()  # a converted PySlowFast checkpoint's: sampled as Kinetics


def test_the_paper_defaults_of_the_protocols_are_the_conf_groups():
    """What an old checkpoint without test views or frame grid is tested with is what the conf groups set."""
    for name, protocol in (("kinetics", ClipProtocol()), ("ssv2", SSV2_PROTOCOL)):
        test = OmegaConf.load(CONF / "test" / f"{name}.yaml").test
        assert protocol.paper_views == (test.num_ensemble_views, test.num_spatial_crops), name
    assert SSV2_PROTOCOL.paper_frame_grid_fps == OmegaConf.load(CONF / "data" / "ssv2.yaml").data.frame_grid_fps
    assert OmegaConf.load(CONF / "config.yaml").data.frame_grid_fps == ClipProtocol().paper_frame_grid_fps


def test_unknown_names_are_config_errors_listing_the_registered():
    with pytest.raises(ConfigError, match=r"unknown dataset 'ucf'; registered: kinetics, ssv2, synthetic"):
        dataset_entry("ucf")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("kinetics", build_toy)
    with pytest.raises(ValueError, match="lower case"):
        register_dataset("My Set", build_toy)
    assert DataConfig.__dataclass_fields__["dataset"].metadata["choices"] is DATASETS  # checked as registered now


@pytest.mark.slow
def test_a_registered_dataset_is_built_with_its_protocol(toy):
    run = kinetics_cfg(toy, **{"data.dataset": "toy", "test.num_spatial_crops": 1})  # choices follow the registry
    test = build_dataset(run, "test")
    assert test.class_names == ["even", "odd"] and test.labels == [0, 1, 0, 1]
    assert test.spec.one_crop_index == 0 and not test.spec.segment_sampling  # its protocol, not Kinetics' center
    assert test[0]["views"].shape == (2, 3, 4, 32, 32)
    train = build_dataset(run, "train")
    assert train.train_transform is not None and train.num_sample == 2
    # its labels are checked against its class list by the shared helper, naming the list file
    (toy / "val.json").write_text(json.dumps([{"video": "a.mp4", "label": 0}, {"video": "b.mp4", "label": 2}]))
    with pytest.raises(UserError, match=r"val.json has label 2 \(b.mp4\) but .*classes.json has 2 classes") as e:
        build_dataset(run, "val")
    assert "\n" not in str(e.value)


def test_the_label_range_check_names_the_list_the_video_and_the_count(tmp_path):
    from mvit_video.data.lists import check_label_range

    check_label_range([0, 1, 1], 2, listed="x", classes="y")  # in range: nothing
    check_label_range([], 2, listed="x", classes="y")
    with pytest.raises(ConfigError, match=r"^the val list has label 7 \(b.mp4\) but model.num_classes is 2: "
                                          r"labels must be in \[0, 1\]$"):
        check_label_range([0, 7, 7], 2, listed="the val list", classes="model.num_classes is 2",
                          paths=["a.mp4", "b.mp4", "c.mp4"])


@pytest.mark.slow
def test_a_registered_dataset_trains_tests_and_predicts(toy, tmp_path):
    """Registering is all it takes: train (train/val/test lists through build_dataset), the checkpoint records the
    name, and Predictor samples the checkpoint's views with the registered protocol."""
    from mvit_video import Predictor
    from mvit_video.checkpoint import load_checkpoint_info
    from mvit_video.config import compose
    from mvit_video.train import train
    from mvit_video.utils.io import read_jsonl

    out = tmp_path / "run"
    train(compose(tiny_overrides(toy, out, "data.dataset=toy", "solver.max_epoch=1", "test.enable=true")))
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["split"] for r in records] == ["train", "val", "test"] and records[-1]["videos"] == 4
    checkpoint = out / "checkpoints" / "checkpoint_epoch_00001.pyth"
    info = load_checkpoint_info(checkpoint)
    assert info["data_config"]["dataset"] == "toy" and info["class_names"] == ["even", "odd"]
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    assert predictor.spec().one_crop_index == 0
    video = json.loads((toy / "test.json").read_text())[0]["video"]
    assert torch.equal(predictor.dataset([video])[0]["views"], build_dataset(
        predictor_run(toy), "test")[0]["views"])


def test_custom_imports_failures_name_the_users_file_and_line(tmp_path, monkeypatch):
    from mvit_video.settings import import_custom

    (tmp_path / "lab_syntax.py").write_text("x = 1\ndef broken(:\n")
    (tmp_path / "lab_needs.py").write_text("import json\nimport lab_dependency_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=rf"importing 'lab_syntax' failed at {tmp_path / 'lab_syntax.py'}:2: "
                                          r"SyntaxError"):
        import_custom(["lab_syntax"])
    with pytest.raises(ConfigError, match=rf"importing 'lab_needs' failed at {tmp_path / 'lab_needs.py'}:2: "
                                          r"ModuleNotFoundError: No module named 'lab_dependency_not_installed'"):
        import_custom(["lab_needs"])
    with pytest.raises(ConfigError, match=r"^config key 'custom_imports': importing 'no_such_lab_module' failed: "
                                          r"ModuleNotFoundError: No module named 'no_such_lab_module'$"):
        import_custom(["no_such_lab_module"])
    with pytest.raises(ConfigError, match=r"config key 'custom_imports': expected a list of module names"):
        import_custom("lab_needs")
    import_custom([])  # nothing to import
    import_custom(["json"])


@pytest.mark.slow
def test_commands_know_a_dataset_that_custom_imports_registers(toy, tmp_path):
    """A dataset registered by the user's own module is known to the commands (a fresh process each, as torchrun
    and SLURM start them) once config key custom_imports names the module; a module that is missing or fails is
    one line naming the key (and the file and line of the failure). The checkpoint remembers the module."""
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "lab_datasets.py").write_text("from mvit_video.settings import ClipProtocol, register_dataset\n"
                                         "register_dataset('labjson', 'test_registry:build_toy', "
                                         "ClipProtocol(one_crop_index=0))\n")
    (lab / "broken_lab.py").write_text("import json\nraise ValueError('not configured yet')\n")
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lab), str(tests), str(tests.parent)])}
    out = tmp_path / "run"
    args = tiny_overrides(toy, out, "data.dataset=labjson", "solver.max_epoch=1", "test.enable=true")

    def train(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mvit_video.train", *args, *extra], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    r = train()
    assert r.returncode == 2 and "unknown dataset 'labjson'" in r.stderr  # not registered in a new process
    r = train("custom_imports=[lab_datasets]")
    assert r.returncode == 0, r.stderr[-2000:]
    assert [m["split"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [
        "train", "val", "test"]
    # The checkpoint remembers the module: a new process's Predictor imports it and samples with its protocol
    # (left crop), or, where it cannot be imported, says so and samples as Kinetics (center crop)
    probe = ("import sys; from mvit_video import Predictor; "
             "print(Predictor.from_checkpoint(sys.argv[1], device='cpu').spec().one_crop_index)")
    checkpoint = str(out / "checkpoints" / "checkpoint_epoch_00001.pyth")
    r = subprocess.run([sys.executable, "-c", probe, checkpoint], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["0"], r.stderr[-2000:]
    alone = {**env, "PYTHONPATH": str(tests.parent)}
    r = subprocess.run([sys.executable, "-c", probe, checkpoint], env=alone, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["1"], r.stderr[-2000:]
    assert "dataset 'labjson' is not registered in this process (its run imported lab_datasets)" in r.stderr
    r = train("custom_imports=[broken_lab]")  # the command's one line (the other failures: the unit test above)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"importing 'broken_lab' failed at {lab / 'broken_lab.py'}:2: ValueError: not configured yet" in r.stderr


def predictor_run(root: Path):
    """The test settings of the tiny run above (1x1 views), for the reference views."""
    return kinetics_cfg(root, **{"data.dataset": "toy", "test.num_ensemble_views": 1, "test.num_spatial_crops": 1})
