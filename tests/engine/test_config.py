"""Every preset composes and validates with the official recipe values; wrong keys/values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvit_video.config import CONF_DIR, build_config, compose
from mvit_video.utils.errors import ConfigError

# preset: (classes, frames, rate, crop, depth, dim, heads, droppath, optimizer, base_lr, epochs, warmup,
#          batch, views K, crops S, num_sample) -- PySlowFast configs/{Kinetics,SSv2}/MVITv2_*.yaml and the paper.
PRESETS = {
    "k400_s_16x4": (400, 16, 4, 224, 16, 96, 1, 0.2, "adamw", 1e-4, 200, 30.0, 16, 5, 1, 2),
    "k400_b_32x3": (400, 32, 3, 224, 24, 96, 1, 0.3, "adamw", 1e-4, 200, 30.0, 16, 5, 1, 2),
    "k400_l_40x3_312": (400, 40, 3, 312, 48, 144, 2, 0.75, "adamw", 1e-4, 200, 30.0, 16, 5, 3, 1),
    "k600_b_32x3": (600, 32, 3, 224, 24, 96, 1, 0.3, "adamw", 1e-4, 200, 30.0, 16, 5, 1, 2),
    "k600_l_40x3_312": (600, 40, 3, 312, 48, 144, 2, 0.75, "adamw", 1e-4, 200, 30.0, 16, 5, 3, 1),
    "k700_b_32x3": (700, 32, 3, 224, 24, 96, 1, 0.3, "adamw", 1e-4, 200, 30.0, 16, 5, 1, 2),
    "k700_l_40x3_312": (700, 40, 3, 312, 48, 144, 2, 0.75, "adamw", 1e-4, 200, 30.0, 16, 5, 3, 1),
    "ssv2_s_16x4": (174, 16, 4, 224, 16, 96, 1, 0.4, "sgd", 0.0025, 100, 3.0, 16, 1, 3, 1),
    "ssv2_b_32x3": (174, 32, 3, 224, 24, 96, 1, 0.4, "sgd", 0.0015, 100, 3.0, 16, 1, 3, 1),
    "ssv2_l_40x3": (174, 40, 3, 312, 48, 144, 2, 0.75, "sgd", 0.00125, 40, 3.0, 8, 1, 3, 1),
}


def test_every_preset_file_is_checked() -> None:
    assert {p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")} == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_composes_with_official_recipe(name: str) -> None:
    (classes, frames, rate, crop, depth, dim, heads, droppath, method, lr, epochs, warmup, batch, views, crops,
     num_sample) = PRESETS[name]
    cfg = build_config(compose([f"+experiment={name}"]))
    assert cfg.name == name and cfg.output_dir == f"outputs/{name}"
    assert cfg.model.num_classes == classes
    assert (cfg.data.num_frames, cfg.data.sampling_rate) == (frames, rate)
    assert cfg.data.train_crop_size == cfg.data.test_crop_size == crop
    assert (cfg.model.depth, cfg.model.embed_dim, cfg.model.num_heads) == (depth, dim, heads)
    assert cfg.model.droppath_rate == droppath and cfg.model.dropout_rate == 0.5
    assert cfg.solver.optimizing_method == method and cfg.solver.base_lr == pytest.approx(lr)
    assert cfg.solver.max_epoch == epochs and cfg.solver.warmup_epochs == warmup
    assert cfg.solver.cosine_end_lr == pytest.approx(1e-6)
    assert cfg.solver.zero_wd_1d_param and not cfg.solver.zero_decay_pos_cls
    assert cfg.train.batch_size == batch
    assert (cfg.test.num_ensemble_views, cfg.test.num_spatial_crops) == (views, crops)
    assert cfg.data.num_sample == num_sample
    assert cfg.aug.enable and cfg.aug.aa_type == "rand-m7-n4-mstd0.5-inc1" and cfg.mixup.enable
    large = depth == 48
    assert cfg.model.act_checkpoint == large
    # SSv2-L: PySlowFast normalised BGR frames with the RGB-ordered ImageNet mean, then reversed (REFERENCE §9)
    imagenet = [0.406, 0.456, 0.485] if name.startswith("ssv2") else [0.485, 0.456, 0.406]
    assert list(cfg.data.mean) == (imagenet if large else [0.45, 0.45, 0.45])
    if name.startswith("k"):
        assert cfg.data.dataset == "kinetics" and cfg.data.random_flip
        assert cfg.solver.weight_decay == 0.05 and cfg.solver.clip_grad_l2norm == 1.0
    else:
        assert cfg.data.dataset == "ssv2" and not cfg.data.random_flip
        assert cfg.solver.weight_decay == pytest.approx(1e-4) and cfg.solver.momentum == 0.9


def test_stage_layout_of_b_and_l() -> None:
    b = compose(["+experiment=k400_b_32x3"])
    assert [list(x) for x in b.mvit.dim_mul] == [[2, 2.0], [5, 2.0], [21, 2.0]]
    assert [s[0] for s in b.mvit.pool_q_stride if s[2] == 2] == [2, 5, 21]
    large = compose(["+experiment=ssv2_l_40x3"])
    assert [list(x) for x in large.mvit.dim_mul] == [[2, 2.0], [8, 2.0], [44, 2.0]]
    assert list(large.mvit.pool_kv_stride_adaptive) == [1, 8, 8]
    assert large.solver.clip_grad_l2norm == 2.0 and large.mixup.prob == 0.0


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


def test_booleans_accept_true_false_and_hydra_spellings() -> None:
    for value in ("true", "false", "True", "FALSE"):
        build_config(compose([f"data.random_flip={value}", f"train.auto_resume={value}"]))
    for value in ("true", "false", "auto"):
        build_config(compose([f"train.compile={value}"]))


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
