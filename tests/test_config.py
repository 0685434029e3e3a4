"""Every preset composes and validates with the official recipe values; wrong keys/values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvit_video.config import CONF_DIR, build_config, compose
from mvit_video.utils.errors import ConfigError

# The presets' recipe values (vs PySlowFast and the paper) are checked in tests/models/test_presets_stats.py.
PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_default_is_the_tiny_synthetic_run() -> None:
    cfg = build_config(compose([]))
    assert cfg.data.dataset == "synthetic" and cfg.name == "tiny_synthetic"
    assert cfg.output_dir == "outputs/tiny_synthetic"


@pytest.mark.parametrize(
    "override, named",
    [
        ("data.nope=1", "data.nope"),
        ("nope=3", "nope"),
        ("solver.base_lrr=0.1", "solver.base_lrr"),
        ("model=mvit_xxl", "model/mvit_xxl"),
        ("+experiment=k400_z", "experiment/k400_z"),
    ],
)
def test_unknown_key_or_choice_is_named(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=f"'{named}'") as e:
        compose([override])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.decoder=opencv", "data.decoder"),
        ("solver.optimizing_method=adam", "solver.optimizing_method"),
        ("data.num_frames=0", "data.num_frames"),
        ("data.train_crop_size=abc", "data.train_crop_size"),
        ("train.batch_size=-2", "train.batch_size"),
        ("solver.warmup_epochs=-1", "solver.warmup_epochs"),
        ("solver.cosine_end_lr=1.0", "solver.cosine_end_lr"),
        ("test.num_spatial_crops=2", "test.num_spatial_crops"),
        ("train.amp_dtype=fp8", "train.amp_dtype"),
        ("data.std=[0.2,0.2]", "data.std"),
        ("device=tpu", "device"),
        ("data.test_crop_size=96", "data.train_jitter_scales"),  # default 1-crop short side 64 < crop 96
        ("test.split=bogus", "test.split"),
        ("test.max_views_per_forward=0", "test.max_views_per_forward"),
        # booleans take true/false only: "no" or "off" would read as true (a flip swaps left/right classes)
        ("train.ema.enable=no", "train.ema.enable"),
        ("train.auto_resume=no", "train.auto_resume"),
        ("data.random_flip=no", "data.random_flip"),
        ("train.compile=off", "train.compile"),
        ("train.compile=1", "train.compile"),
        ("mvit.cls_embed_on=yes", "mvit.cls_embed_on"),
    ],
)
def test_bad_value_is_named(override: str, key: str) -> None:
    cfg = compose([override])
    with pytest.raises(ConfigError, match=f"'{key}'"):
        build_config(cfg)


@pytest.mark.slow
def test_batch_must_divide_world_size_and_paths_are_checked(tmp_path: Path) -> None:
    cfg = compose(["train.batch_size=6"])
    build_config(cfg, world_size=2)
    with pytest.raises(ConfigError, match="'train.batch_size'.*world size 4"):
        build_config(cfg, world_size=4)
    k400 = compose(["+experiment=k400_s_16x4"])
    with pytest.raises(ConfigError, match="'data.path_to_data_dir'"):
        build_config(k400, check_paths=True)
    build_config(compose(["+experiment=k400_s_16x4", f"data.path_to_data_dir={tmp_path}"]), check_paths=True)
    with pytest.raises(ConfigError, match="'train.checkpoint_file_path'"):
        build_config(compose([f"train.checkpoint_file_path={tmp_path}/none.pyth"]), check_paths=True)


@pytest.mark.slow
def test_booleans_accept_true_false_and_hydra_spellings() -> None:
    """Hydra reads true/false in any case: each spelling gives that value (FALSE is false, not a true string)."""
    for value, expected in (("true", True), ("false", False), ("True", True), ("FALSE", False)):
        run = build_config(compose([f"data.random_flip={value}", f"train.auto_resume={value}"]))
        assert run.data.random_flip is expected and run.train.auto_resume is expected, value
    for value, expected in (("true", True), ("false", False), ("FALSE", False), ("auto", "auto")):
        assert build_config(compose([f"train.compile={value}"])).train.compile == expected, value


@pytest.mark.slow
def test_build_config_leaves_the_composed_config_unchanged(caplog) -> None:
    """The shortened warmup and a launcher's num_shards go into the settings and their YAML (config.yaml, the
    checkpoint's cfg), never back into the DictConfig passed in; the shortened-warmup note is still logged."""
    from omegaconf import OmegaConf

    from mvit_video.config import build_config_and_notes
    from mvit_video.engine.optim import Schedule

    cfg = compose(["solver.max_epoch=1", "solver.warmup_epochs=30"])  # a preset's warmup: it does not fit
    before = OmegaConf.to_yaml(cfg)
    with caplog.at_level("INFO", logger="mvit_video.config"):
        run = build_config(cfg, world_size=2, num_shards=2)
    assert OmegaConf.to_yaml(cfg) == before and cfg.solver.warmup_epochs == 30 and cfg.num_shards == 1
    assert run.solver.warmup_epochs == 0.5 and run.num_shards == 2
    saved = OmegaConf.create(run.yaml)
    assert saved.solver.warmup_epochs == 0.5 and saved.num_shards == 2
    assert "solver.warmup_epochs=30 is not shorter than solver.max_epoch=1: warmup shortened to 0.5" in caplog.text
    # the LR is scaled by the launcher's number of nodes (solver.base_lr_scale_num_shards, on by default)
    assert Schedule.from_config(run.solver, run.num_shards).base_lr == pytest.approx(2 * run.solver.base_lr)

    # The notes, without logging them (train() logs them once its log file is set up); a fitting schedule: none.
    caplog.clear()
    with caplog.at_level("INFO", logger="mvit_video.config"):
        again, notes = build_config_and_notes(cfg)
        fits, no_notes = build_config_and_notes(compose(["solver.max_epoch=40", "solver.warmup_epochs=30"]))
    assert caplog.text == "" and len(notes) == 1 and "warmup shortened to 0.5 epochs" in notes[0]
    assert again.num_shards == 1 and again.yaml == run.yaml.replace("num_shards: 2", "num_shards: 1")
    assert no_notes == [] and fits.solver.warmup_epochs == 30


@pytest.mark.slow
def test_every_boolean_key_rejects_other_words() -> None:
    """Each boolean of the config and of every preset: `no` is refused, naming the key (it would read as true)."""
    from omegaconf import OmegaConf

    found: set[str] = set()

    def walk(node: dict, prefix: str = "") -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, bool):
                found.add(f"{prefix}{key}")

    for overrides in [[]] + [[f"+experiment={name}"] for name in PRESETS]:
        walk({k: v for k, v in OmegaConf.to_container(compose(overrides)).items() if k != "hydra"})
    assert len(found) > 25
    for key in sorted(found):
        with pytest.raises(ConfigError, match=f"'{key}'"):
            build_config(compose([f"{key}=no"]))
