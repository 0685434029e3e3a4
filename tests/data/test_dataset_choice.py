"""Choosing SSv2 (issue 20 item 2): `data=ssv2` gives PySlowFast's SSv2 protocol (30 fps frame grid, 1x3 test
views), and `data.dataset=ssv2` over another data group, which would keep that group's protocol, is refused with
a line naming the right form."""

from __future__ import annotations

import pytest

from mvit_video.config import build_config, compose
from mvit_video.data.clips import ClipSpec
from mvit_video.utils.errors import ConfigError


def _spec(overrides: list[str]) -> ClipSpec:
    run = build_config(compose(overrides))
    return ClipSpec.from_config(run.data, run.test)


@pytest.mark.slow
def test_data_group_ssv2_is_the_pyslowfast_protocol():
    spec = _spec(["data=ssv2"])
    assert spec.segment_sampling and spec.frame_grid_fps == 30.0 and spec.one_crop_index == 0
    assert (spec.num_ensemble_views, spec.num_spatial_crops) == (1, 3)  # test=ssv2, picked by the data group
    # the ssv2 experiment samples the same way (its model and recipe aside)
    assert _spec(["+experiment=ssv2_s_16x4"]) == spec
    # the test views stay a choice of their own
    assert _spec(["data=ssv2", "test=kinetics"]).num_ensemble_views == 5


@pytest.mark.parametrize("group", ["synthetic", pytest.param("kinetics", marks=pytest.mark.slow)])
def test_data_dataset_ssv2_over_another_group_is_refused(group):
    with pytest.raises(ConfigError, match=r"config key 'data.dataset'.*choose ssv2 with data=ssv2") as e:
        build_config(compose([f"data={group}", "data.dataset=ssv2"]))
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_other_dataset_switches_keep_working():
    """`data.dataset=kinetics` over the synthetic group (the tiny model on your own lists, the first-run hint) has
    the same protocol as `data=kinetics`; an explicit frame grid makes an SSv2 choice deliberate."""
    assert _spec(["data.dataset=kinetics"]).segment_sampling is False
    spec = _spec(["data.dataset=ssv2", "data.frame_grid_fps=30"])
    assert spec.segment_sampling and spec.frame_grid_fps == 30.0
