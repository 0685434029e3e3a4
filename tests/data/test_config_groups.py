"""The data/aug config groups compose with Hydra and hold the preset values."""

from __future__ import annotations

import pytest

from mvit_video.config import compose


@pytest.mark.slow
def test_default_is_the_synthetic_set():
    cfg = compose([])
    assert cfg.data.dataset == "synthetic" and not cfg.data.random_flip
    assert cfg.model.num_classes == cfg.data.synthetic.num_classes == 6
    assert cfg.data.num_frames * cfg.data.sampling_rate <= cfg.data.synthetic.num_frames


@pytest.mark.parametrize(
    "data, aug, flip, num_sample, classes",
    [("kinetics", "mvitv2", True, 2, 400), ("ssv2", "mvitv2_ssv2", False, 1, 174)],
)
def test_presets(data, aug, flip, num_sample, classes):
    cfg = compose([f"data={data}", f"aug={aug}"])
    assert cfg.data.random_flip is flip and cfg.data.num_sample == num_sample and cfg.model.num_classes == classes
    assert cfg.aug.enable and cfg.aug.aa_type == "rand-m7-n4-mstd0.5-inc1" and cfg.aug.re_prob == 0.25
    assert cfg.mixup.enable and cfg.mixup.alpha == 0.8 and cfg.mixup.cutmix_alpha == 1.0
    assert cfg.mixup.label_smooth_value == 0.1
