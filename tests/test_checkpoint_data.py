"""A checkpoint's data_config as the typed record settings.CheckpointData (#22 item 6): the same plain dict in the
file, the defaults for what older checkpoints lack in one place, and evaluate's clip policy (predict.clip_settings)
reading only what a checkpoint records."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny import make_cfg

from mvit_video.data.synthetic import DEFAULTS, SET_SIZES
from mvit_video.predict import Predictor, clip_settings
from mvit_video.settings import CheckpointData
from mvit_video.utils.errors import UserError

CONF = Path(__file__).resolve().parents[1] / "conf"

# What a checkpoint of the ssv2_b_32x3 experiment held before the record (checkpoint.data_config of bbd7fd2).
SSV2_B = {"num_frames": 32, "sampling_rate": 3, "target_fps": 30.0, "train_crop_size": 224, "test_crop_size": 224,
          "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225], "dataset": "ssv2", "use_offset_sampling": True,
          "train_jitter_scales": [256, 320], "frame_grid_fps": 30.0, "num_ensemble_views": 1, "num_spatial_crops": 3}


@pytest.fixture(scope="module")
def ssv2_run():
    from mvit_video.config import build_config, compose

    return build_config(compose(["+experiment=ssv2_b_32x3"]))


@pytest.mark.slow
def test_the_record_writes_the_dict_checkpoints_always_held(ssv2_run):
    written = CheckpointData.from_run(ssv2_run).to_dict()
    assert written == SSV2_B and list(written) == list(SSV2_B)  # keys, order, values
    assert type(written["mean"]) is list and type(written["train_jitter_scales"]) is list  # weights_only loads
    assert CheckpointData.from_dict(written) == CheckpointData.from_run(ssv2_run)  # and reads back the same
    with pytest.warns(DeprecationWarning, match="mvit_video.checkpoint.data_config is deprecated"):
        from mvit_video.checkpoint import data_config

        assert data_config(ssv2_run) == written


def test_older_checkpoints_get_the_defaults_of_one_place():
    nothing = CheckpointData.from_dict(None)  # a checkpoint without data_config
    assert nothing == CheckpointData.from_dict({}) and nothing.recorded == frozenset()
    assert (nothing.dataset, nothing.use_offset_sampling, nothing.frame_grid_fps) == ("kinetics", True, 0.0)
    assert (nothing.num_ensemble_views, nothing.num_spatial_crops) == (5, 1)  # Kinetics' paper views
    assert nothing.lacking(["num_frames", "mean", "dataset"]) == ["num_frames", "mean"]
    # SSv2 before frame_grid_fps and the test views were recorded: its protocol's 30 fps grid and 1x3 views
    old = CheckpointData.from_dict({k: v for k, v in SSV2_B.items()
                                    if k not in ("frame_grid_fps", "num_ensemble_views", "num_spatial_crops")})
    assert (old.frame_grid_fps, old.num_ensemble_views, old.num_spatial_crops) == (30.0, 1, 3)
    assert old.to_dict() == {k: v for k, v in SSV2_B.items() if k in old.recorded}  # only what it recorded
    # one view count alone is not a test protocol: the paper's pair
    assert CheckpointData.from_dict({"dataset": "ssv2", "num_ensemble_views": 4}).num_ensemble_views == 1
    # converted checkpoints write ints where we write floats, and newer versions may add keys
    converted = CheckpointData.from_dict({"target_fps": 30, "mean": [0, 0, 0], "future_key": 1})
    assert converted.target_fps == 30.0 and converted.mean == (0.0, 0.0, 0.0)


def test_a_wrong_value_names_the_checkpoint_and_the_key():
    with pytest.raises(UserError, match=r"^c.pyth: data_config.num_frames is '16', expected an integer$"):
        CheckpointData.from_dict({"num_frames": "16"}, source="c.pyth")
    with pytest.raises(UserError, match="data_config.use_offset_sampling is 'yes', expected true/false"):
        CheckpointData.from_dict({"use_offset_sampling": "yes"})
    with pytest.raises(UserError, match="c.pyth: data_config is a list, not a mapping"):
        CheckpointData.from_dict([1, 2], source="c.pyth")


@pytest.mark.slow
def test_evaluate_adopts_only_what_the_checkpoint_records(kinetics_list_dir, caplog):
    data = make_cfg("kinetics", overrides={"data.path_to_data_dir": str(kinetics_list_dir),
                                           "data.use_offset_sampling": False}).data
    # an old checkpoint without use_offset_sampling: the user's false stays (not the record's default true)
    old = {"num_frames": 8, "sampling_rate": data.sampling_rate}
    with caplog.at_level("INFO"):
        assert clip_settings(data, old, "old.pyth") == {"num_frames": 8}
    assert "clip settings from the checkpoint old.pyth: data.num_frames=8" in caplog.text
    recorded = {**old, "use_offset_sampling": True}
    assert clip_settings(data, CheckpointData.from_dict(recorded), "new.pyth") == {"num_frames": 8,
                                                                                  "use_offset_sampling": True}
    with pytest.warns(DeprecationWarning, match="mvit_video.checkpoint.clip_settings is deprecated"):
        from mvit_video.checkpoint import clip_settings as old_name
    assert old_name is clip_settings


def test_python_api_defaults_equal_the_config_defaults():
    """Python API defaults that config.yaml also sets, for callers without a config: Predictor(decoder=...)
    (data.decoder) and the synthetic set's rendering (data.synthetic.*). This keeps them equal (MViTConfig's are
    kept by tests/models/test_model_config.py)."""
    config = OmegaConf.load(CONF / "config.yaml")
    assert inspect.signature(Predictor).parameters["decoder"].default == config.data.decoder
    synthetic = OmegaConf.to_container(config.data.synthetic)
    assert DEFAULTS == {k: v for k, v in synthetic.items() if k not in SET_SIZES}


def test_old_checkpoint_names_still_import():
    from mvit_video import checkpoint as ck

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current names warn nothing
        assert CheckpointData.keys()[-2:] == ("num_ensemble_views", "num_spatial_crops")
    with pytest.warns(DeprecationWarning, match="DATA_CONFIG_KEYS is deprecated"):
        assert (*ck.DATA_CONFIG_KEYS, "num_ensemble_views", "num_spatial_crops") == CheckpointData.keys()
    with pytest.warns(DeprecationWarning, match="TEST_CONFIG_KEYS is deprecated"):
        assert ck.TEST_CONFIG_KEYS == ("num_ensemble_views", "num_spatial_crops")
    with pytest.raises(AttributeError):
        ck.no_such_name  # noqa: B018


@pytest.mark.slow
def test_an_older_checkpoint_file_loads_with_the_defaults(tmp_path):
    """A checkpoint written before frame_grid_fps, the test views, use_offset_sampling and the jitter scales were
    recorded: Predictor tests it with the defaults (and says the views are the paper's); one without the clip
    sizes is refused in one line naming what it lacks; one without data_config cannot give views."""
    import torch
    from tiny import tiny_config

    from mvit_video.checkpoint import make_checkpoint
    from mvit_video.models import build_model
    from mvit_video.utils.io import atomic_torch_save

    config = tiny_config()
    model = build_model(config)
    old = {"num_frames": 4, "sampling_rate": 2, "target_fps": 30, "test_crop_size": 32, "mean": [0.45] * 3,
           "std": [0.225] * 3, "dataset": "kinetics"}
    for name, data_config in (("old", old), ("sizeless", {"dataset": "kinetics"}), ("none", None)):
        ckpt = make_checkpoint(model, config, {}, None)
        ckpt["data_config"] = data_config
        atomic_torch_save(ckpt, tmp_path / f"{name}.pyth")
    predictor = Predictor.from_checkpoint(tmp_path / "old.pyth", device="cpu")
    spec = predictor.spec()
    assert predictor.settings["views"] == (5, 1) and "not recorded in the checkpoint" in predictor.describe()
    assert spec.use_offset_sampling and spec.test_short_side == 32 and spec.frame_grid_fps == 0.0
    assert predictor.predict(torch.zeros(20, 36, 40, 3, dtype=torch.uint8), fps=30.0).probs.shape == (2,)
    with pytest.raises(UserError, match=r"sizeless.pyth: data_config lacks num_frames, sampling_rate, target_fps, "
                                        r"test_crop_size, mean, std; cannot sample views"):
        Predictor.from_checkpoint(tmp_path / "sizeless.pyth", device="cpu")
    with pytest.raises(UserError, match="none.pyth: the checkpoint has no data_config"):
        Predictor.from_checkpoint(tmp_path / "none.pyth", device="cpu")
