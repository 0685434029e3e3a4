"""Sweep job folders: named by the swept keys' values only, short and stable."""

from __future__ import annotations

from mvit_video.cli import job_dir_name, swept_keys


def test_swept_keys_are_the_keys_with_several_values() -> None:
    args = ["solver.base_lr=1e-3,2e-3", "+experiment=a,b", "hydra.launcher.nodes=1,2", "seed=range(0,3)",
            "data.dataset=kinetics", "model.num_classes=3"]
    assert swept_keys(args) == ["solver.base_lr", "experiment", "seed"]


def test_job_folder_names() -> None:
    job = ["data.dataset=kinetics", "model.num_classes=3", "solver.base_lr=0.0001", "solver.max_epoch=1"]
    assert job_dir_name(job, ["solver.base_lr"], 0) == "base_lr=0.0001"  # not every override
    assert job_dir_name(job, ["solver.base_lr", "solver.max_epoch"], 1) == "base_lr=0.0001,max_epoch=1"
    # the last parts collide: whole keys; a "/" in a value stays inside the folder name
    assert job_dir_name(["data.seed=1", "seed=2", "data.path_prefix=/a/b"], ["data.seed", "seed", "data.path_prefix"],
                        2) == "data.seed=1,seed=2,data.path_prefix=_a_b"
    long = job_dir_name(["data.path_prefix=" + "x" * 90], ["data.path_prefix"], 7)
    assert long.startswith("job7-") and len(long) == 15
    assert long == job_dir_name(["data.path_prefix=" + "x" * 90], ["data.path_prefix"], 7)  # stable
    assert job_dir_name(job, [], 0) == ""  # nothing swept: the job writes to output_dir itself
