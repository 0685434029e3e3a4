"""Clip transforms: one parameter set per clip, flips, crops at the PySlowFast positions, mixup targets."""

from __future__ import annotations

import random
import statistics

import pytest
import torch
import torch.nn.functional as F
from data_helpers import make_cfg

from mvit_video.data import transforms as T
from mvit_video.data.transforms import (
    MixupCutmix,
    RandAugmentVideo,
    TrainTransform,
    build_mixup,
    build_train_transform,
    parse_rand_augment,
    uniform_crop,
)

MEAN, STD = [0.45] * 3, [0.225] * 3


def _clip(t: int = 6, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=g)


def test_one_parameter_set_per_clip():
    # identical frames stay identical after crop, flip, RandAugment and erasing: all frames share the parameters
    torch.manual_seed(0)
    random.seed(0)
    frames = _clip(1).repeat(8, 1, 1, 1)
    full = TrainTransform(32, MEAN, STD, rand_augment=RandAugmentVideo(num_ops=4, magnitude=9), re_prob=1.0)
    jitter = TrainTransform(32, MEAN, STD, scale=[], jitter_scales=[40, 56], rand_augment=RandAugmentVideo())
    for transform in (full, jitter):
        for _ in range(25):
            out = transform(frames)
            assert out.shape == (3, 8, 32, 32) and out.dtype == torch.float32
            assert torch.equal(out, out[:, :1].expand_as(out))


def test_build_train_transform_from_cfg():
    cfg = make_cfg("kinetics", "mvitv2", {"data.train_crop_size": 32})
    t = build_train_transform(cfg)
    assert isinstance(t.rand_augment, RandAugmentVideo) and t.rand_augment.num_ops == 4
    assert t.flip is not None and len(t.erase) == 1
    assert t(_clip()).shape == (3, 6, 32, 32)
    assert build_train_transform(cfg, random_flip=False).flip is None
    assert build_train_transform(make_cfg("ssv2", "mvitv2_ssv2")).flip is None


def _left_right_frames() -> torch.Tensor:
    frames = torch.zeros(4, 32, 32, 3, dtype=torch.uint8)
    frames[:, :, 16:] = 255  # right half white
    return frames


def test_flip_happens_only_when_enabled():
    torch.manual_seed(0)
    frames = _left_right_frames()
    kw = dict(crop_size=32, mean=[0.0] * 3, std=[1.0] * 3, scale=[1.0, 1.0], aspect=[1.0, 1.0])
    flipped = lambda out: out[0, 0, 0, 0] > out[0, 0, 0, -1]  # noqa: E731  left brighter than right
    with_flip = [flipped(TrainTransform(random_flip=True, **kw)(frames)) for _ in range(30)]
    assert any(with_flip) and not all(with_flip)
    assert not any(flipped(TrainTransform(random_flip=False, **kw)(frames)) for _ in range(30))


def test_rand_augment_magnitude_std():
    spec = parse_rand_augment("rand-m7-n4-mstd0.5-inc1")
    assert spec == {"magnitude": 7.0, "num_ops": 4, "magnitude_std": 0.5, "increasing": True}
    random.seed(0)
    ra = RandAugmentVideo(magnitude=7, magnitude_std=0.5)
    levels = [ra.sample_level() for _ in range(4000)]
    assert abs(statistics.mean(levels) - 7.0) < 0.05 and abs(statistics.stdev(levels) - 0.5) < 0.05
    assert all(0.0 <= x <= 10.0 for x in levels)
    with pytest.raises(ValueError):
        parse_rand_augment("m9-n2")


def test_every_rand_augment_op_runs_on_video():
    frames = _clip().permute(0, 3, 1, 2)
    ra = RandAugmentVideo()
    for name, op in ra.ops.items():
        out = op(frames, 7.0, ra.fill, ra.interp)
        assert out.shape == frames.shape and out.dtype == torch.uint8, name


def test_three_crops_along_the_long_side():
    # x coordinate written into the pixels: crop positions can be read back
    t, h, w = 2, 32, 56
    frames = torch.arange(w, dtype=torch.uint8).view(1, 1, w, 1).expand(t, h, w, 3).contiguous()
    views = T.test_views(frames, 32, 3, [0.0] * 3, [1 / 255] * 3, short_side=32)
    assert views.shape == (3, 3, t, 32, 32)
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 12, 24]  # left, center ceil((56-32)/2), right
    # portrait: along the height
    tall = frames.transpose(1, 2).contiguous()  # [T, 56, 32, 3], value = y
    views = T.test_views(tall, 32, 3, [0.0] * 3, [1 / 255] * 3, short_side=32)
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 12, 24]


def test_one_crop_resizes_then_takes_the_center():
    frames = _clip(t=3, h=48, w=64)
    views = T.test_views(frames, 32, 1, MEAN, STD, short_side=40)
    assert views.shape == (1, 3, 3, 32, 32)
    # reference: bilinear short side 48 -> 40 (64 -> floor(64/48*40) = 53), center crop at ceil((40-32)/2), ceil(21/2)
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(40, 53), mode="bilinear", align_corners=False)
    ref = (x[:, :, 4:36, 11:43] / 255.0 - 0.45) / 0.225
    torch.testing.assert_close(views[0].permute(1, 0, 2, 3), ref)
    assert T.test_short_side(224, 1, [256, 320]) == 256 and T.test_short_side(224, 3, [256, 320]) == 224


def test_uniform_crop_center_index():
    video = torch.zeros(1, 3, 40, 50)
    assert uniform_crop(video, 40, 1).shape[-2:] == (40, 40)


def test_mixup_targets():
    torch.manual_seed(0)
    random.seed(0)
    video, labels = torch.randn(6, 3, 4, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    mix = MixupCutmix(5, label_smoothing=0.1)
    for _ in range(10):
        out, target = mix(video, labels)
        assert out.shape == video.shape and target.shape == (6, 5)
        torch.testing.assert_close(target.sum(1), torch.ones(6))
        assert target.min() >= 0.1 / 5 - 1e-6
        assert (target > 0.1 / 5 + 1e-6).sum(1).le(2).all()  # at most two classes mixed per sample
    # prob 0: only label smoothing
    _, target = MixupCutmix(5, prob=0.0, label_smoothing=0.1)(video, labels)
    torch.testing.assert_close(target[0], torch.tensor([0.92, 0.02, 0.02, 0.02, 0.02]))
    assert build_mixup(make_cfg("kinetics", "none"), 5) is None
    assert isinstance(build_mixup(make_cfg("kinetics", "mvitv2"), 5), MixupCutmix)


@pytest.mark.parametrize("crops,short_side", [(1, 40), (3, 32), (1, 48)])
def test_multi_view_crops_equal_each_clip_gathered_then_cropped(crops: int, short_side: int):
    """Views from one set of decoded frames (clips overlap, repeat frames, go backwards) equal gathering each clip
    and cropping it on its own, bit for bit, with and without a resize."""
    frames = _clip(t=7, h=48, w=64)
    clips = [[0, 2, 4], [2, 3, 4], [6, 6, 5]]
    views = T.multi_view_crops(frames, clips, 32, crops, MEAN, STD, short_side=short_side)
    assert views.shape == (3 * crops, 3, 3, 32, 32)
    for k, clip in enumerate(clips):
        ref = T.test_views(frames[clip].clone(), 32, crops, MEAN, STD, short_side=short_side)
        assert torch.equal(views[k * crops : (k + 1) * crops], ref)
    # reference for one view, from the definition: bilinear short side resize, crop, (x/255 - mean)/std
    x = frames.permute(0, 3, 1, 2).float()
    if short_side != 48:
        x = F.interpolate(x, size=(short_side, short_side * 64 // 48), mode="bilinear", align_corners=False)
    h, w = x.shape[-2:]
    y0, x0 = -(-(h - 32) // 2), -(-(w - 32) // 2)
    ref = (x[[6, 6, 5], :, y0 : y0 + 32, x0 : x0 + 32] / 255.0 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(
        STD
    ).view(3, 1, 1)
    center = 2 * crops + (1 if crops == 3 else 0)
    torch.testing.assert_close(views[center].permute(1, 0, 2, 3), ref)
    with pytest.raises(ValueError, match="same number of frames"):
        T.multi_view_crops(frames, [[0, 1], [2]], 32, crops, MEAN, STD, short_side=short_side)
