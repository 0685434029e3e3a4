"""Clip transforms: one parameter set per clip, flips, crops at the PySlowFast positions, mixup targets."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import make_cfg

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


def _one_clip_views(frames: torch.Tensor, crop: int, crops: int, mean, std, short_side: int) -> torch.Tensor:
    """The S test views [S,3,T,crop,crop] of one clip (all of `frames`)."""
    return T.multi_view_crops(frames, [range(frames.shape[0])], crop, crops, mean, std, short_side)


def test_one_parameter_set_per_clip():
    # identical frames stay identical after crop, flip and RandAugment: all frames share the parameters (erasing
    # shares its box but not its noise: test_random_erasing_one_box_fresh_noise_per_frame)
    torch.manual_seed(0)
    random.seed(0)
    frames = _clip(1).repeat(8, 1, 1, 1)
    full = TrainTransform(32, MEAN, STD, rand_augment=RandAugmentVideo(num_ops=4, magnitude=9))
    jitter = TrainTransform(32, MEAN, STD, scale=[], jitter_scales=[40, 56], rand_augment=RandAugmentVideo())
    for transform in (full, jitter):
        for _ in range(25):
            out = transform(frames)
            assert out.shape == (3, 8, 32, 32) and out.dtype == torch.float32
            assert torch.equal(out, out[:, :1].expand_as(out))


@pytest.mark.slow
def test_build_train_transform_from_cfg():
    cfg = make_cfg("kinetics", "mvitv2", {"data.train_crop_size": 32})
    t = build_train_transform(cfg.data, cfg.aug)
    assert isinstance(t.rand_augment, RandAugmentVideo) and t.rand_augment.num_ops == 4
    assert t.flip is not None and isinstance(t.erase, T.RandomErasingCube) and t.erase.probability == 0.25
    assert t(_clip()).shape == (3, 6, 32, 32)
    assert build_train_transform(cfg.data, cfg.aug, random_flip=False).flip is None
    ssv2 = make_cfg("ssv2", "mvitv2_ssv2")
    assert build_train_transform(ssv2.data, ssv2.aug).flip is None


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
    views = _one_clip_views(frames, 32, 3, [0.0] * 3, [1 / 255] * 3, short_side=32)
    assert views.shape == (3, 3, t, 32, 32)
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 12, 24]  # left, center ceil((56-32)/2), right
    # portrait: along the height
    tall = frames.transpose(1, 2).contiguous()  # [T, 56, 32, 3], value = y
    views = _one_clip_views(tall, 32, 3, [0.0] * 3, [1 / 255] * 3, short_side=32)
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 12, 24]


def test_one_crop_resizes_then_takes_the_center():
    frames = _clip(t=3, h=48, w=64)
    views = _one_clip_views(frames, 32, 1, MEAN, STD, short_side=40)
    assert views.shape == (1, 3, 3, 32, 32)
    # reference: bilinear short side 48 -> 40 (64 -> floor(64/48*40) = 53), center crop at ceil((40-32)/2), ceil(21/2)
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(40, 53), mode="bilinear", align_corners=False)
    ref = (x[:, :, 4:36, 11:43] / 255.0 - 0.45) / 0.225
    torch.testing.assert_close(views[0].permute(1, 0, 2, 3), ref)
    assert T.eval_short_side(224, 1, [256, 320]) == 256 and T.eval_short_side(224, 3, [256, 320]) == 224


def test_uniform_crop_center_index():
    video = torch.zeros(1, 3, 40, 50)
    assert uniform_crop(video, 40, 1).shape[-2:] == (40, 40)


@pytest.mark.slow
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
    assert build_mixup(make_cfg("kinetics", "none").mixup, 5) is None
    assert isinstance(build_mixup(make_cfg("kinetics", "mvitv2").mixup, 5), MixupCutmix)


@pytest.mark.parametrize("crops,short_side", [(1, 40), (3, 32), (1, 48)])
def test_multi_view_crops_equal_each_clip_gathered_then_cropped(crops: int, short_side: int):
    """Views from one set of decoded frames (clips overlap, repeat frames, go backwards) equal gathering each clip
    and cropping it on its own, bit for bit, with and without a resize."""
    frames = _clip(t=7, h=48, w=64)
    clips = [[0, 2, 4], [2, 3, 4], [6, 6, 5]]
    views = T.multi_view_crops(frames, clips, 32, crops, MEAN, STD, short_side=short_side)
    assert views.shape == (3 * crops, 3, 3, 32, 32)
    for k, clip in enumerate(clips):
        ref = _one_clip_views(frames[clip].clone(), 32, crops, MEAN, STD, short_side=short_side)
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


# ---------------------------------------------------------------- PySlowFast recipe parity (issue 12)


def _same_video_batch(num_videos: int = 8, num_sample: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch as the loader builds it with repeated augmentation: the num_sample clips of a video adjacent;
    label = video id, and each clip a constant (its row number) so the partner can be read back."""
    b = num_videos * num_sample
    video = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, 3, 1, 224, 224).contiguous()
    labels = torch.arange(num_videos).repeat_interleave(num_sample)
    return video, labels


def test_mixup_pairs_each_clip_with_the_mirrored_batch():
    torch.manual_seed(0)
    video, labels = _same_video_batch()
    b = len(labels)
    out, target = MixupCutmix(8, alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)(video, labels)
    lam = float(target[0, labels[0]])
    partner = torch.arange(b - 1, -1, -1, dtype=torch.float32)  # flip(0): row i with row B-1-i
    torch.testing.assert_close(out[:, 0, 0, 0, 0], lam * torch.arange(b, dtype=torch.float32) + (1 - lam) * partner)
    torch.testing.assert_close(target[torch.arange(b), labels.flip(0)], torch.full((b,), 1 - lam))


@pytest.mark.slow
def test_mixup_rarely_mixes_a_clip_with_its_own_video():
    """PySlowFast measured 16 of 800 targets left unmixed with NUM_SAMPLE 2 (flip(0) pairing; only boxes clipped
    to nothing stay unmixed); torchvision's roll(1) pairing left 406 of 800."""
    torch.manual_seed(0)
    mix = MixupCutmix(8, label_smoothing=0.1)
    unmixed = 0
    for _ in range(50):  # 50 batches x 16 clips = 800 targets, as the PySlowFast measurement
        video, labels = _same_video_batch()
        _, target = mix(video, labels)
        unmixed += int(((target > 0.1 / 8 + 1e-6).sum(1) == 1).sum())
    assert unmixed <= 40, unmixed


def test_random_erasing_one_box_fresh_noise_per_frame():
    """PySlowFast (random_erasing.py, cube mode): the same box on every frame, new N(0,1) noise on each frame."""
    random.seed(0)
    torch.manual_seed(0)
    frames = torch.zeros(6, 32, 32, 3, dtype=torch.uint8)
    kw = dict(crop_size=32, mean=[0.0] * 3, std=[1.0] * 3, scale=[1.0, 1.0], aspect=[1.0, 1.0], random_flip=False)
    for _ in range(20):
        out = TrainTransform(re_prob=1.0, **kw)(frames)  # [3,T,32,32]; 0 outside the erased box
        box = out != 0
        assert box.any()
        assert torch.equal(box, box[:, :1].expand_as(box))  # the same box on every frame
        assert not torch.equal(out[:, 0], out[:, 1])  # but not the same noise
        ys, xs = box[0, 0].nonzero(as_tuple=True)
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert h * w <= round((32 * 32 / 3) ** 0.5 * (10 / 3) ** 0.5 + 1) ** 2  # area up to 1/3 of the frame


def test_random_erasing_tries_up_to_100_boxes():
    """On a 6x300 frame a drawn box fits 2% of the time: 100 tries erase 87% of the clips, 10 tries 19%."""
    random.seed(0)
    erase = T.RandomErasingCube(1.0)
    assert (erase.min_area, erase.max_area, erase.attempts) == (0.02, 1 / 3, 100)
    assert erase.log_aspect == pytest.approx((math.log(0.3), math.log(1 / 0.3)))
    hits = sum(bool(erase(torch.zeros(2, 3, 6, 300)).any()) for _ in range(400))
    ten = T.RandomErasingCube(1.0, attempts=10)
    hits10 = sum(bool(ten(torch.zeros(2, 3, 6, 300)).any()) for _ in range(400))
    assert hits > 300 and hits10 < 120, (hits, hits10)


def test_rand_augment_runs_on_the_full_frames_with_fill_128():
    """PySlowFast's aug_frame: RandAugment on the whole decoded frames, before the crop; fill (128,128,128)."""
    seen = []

    class Recording(RandAugmentVideo):
        def forward(self, video):
            seen.append(tuple(video.shape))
            return super().forward(video)

    cfg = make_cfg("kinetics", "mvitv2", {"data.train_crop_size": 32, "data.test_crop_size": 32,
                                         "data.train_jitter_scales": [48, 60]})
    t = build_train_transform(cfg.data, cfg.aug)
    assert t.rand_augment.fill == [128.0] * 3 and t.rand_augment.interp == "bicubic"
    t.rand_augment = Recording()
    t(_clip(t=4, h=48, w=64))
    assert seen == [(4, 3, 48, 64)]
    # a full-strength translation leaves the fill in the uncovered part
    random.seed(1)
    frames = torch.zeros(2, 3, 20, 40, dtype=torch.uint8)
    out = t.rand_augment.ops["TranslateXRel"](frames, 10.0, [128.0] * 3, "bicubic")
    assert int((out == 128).all(1).all(0).any(0).sum()) == 18  # 0.45 * 40 columns filled


@pytest.mark.parametrize("op", ["rotate", "shear", "translate"])
def test_geometric_ops_match_pil(op: str):
    """The affine ops sample where PIL's Image.transform / rotate do (timm applies them to PIL images), with fill."""
    from PIL import Image

    h, w = 30, 40
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    img = (128 + 100 * torch.sin(xx / 5.0) * torch.cos(yy / 7.0)).round().to(torch.uint8)  # smooth: kernels agree
    frame = img.view(1, 1, h, w).expand(1, 3, h, w).contiguous()
    pil = Image.fromarray(frame[0].permute(1, 2, 0).numpy())
    if op == "rotate":
        ours = T._pil_affine(frame, T._rotate_coeffs(20.0, h, w), [128.0] * 3, "bicubic")
        ref = pil.rotate(20.0, resample=Image.BICUBIC, fillcolor=(128, 128, 128))
    else:
        coeffs = (1, 0.3, 0, 0, 1, 0) if op == "shear" else (1, 0, 0.45 * w, 0, 1, 0)
        ours = T._pil_affine(frame, coeffs, [128.0] * 3, "bicubic")
        ref = pil.transform(pil.size, Image.AFFINE, coeffs, resample=Image.BICUBIC, fillcolor=(128, 128, 128))
    ref = torch.from_numpy(np.array(ref)).permute(2, 0, 1)
    diff = (ours[0].int() - ref.int()).abs()
    assert diff.float().mean() < 1.5 and (diff > 8).float().mean() < 0.02, (diff.float().mean(), diff.max())


@pytest.mark.slow
def test_ssv2_presets_crop_with_short_side_jitter():
    """PySlowFast's SSv2 configs leave TRAIN_JITTER_SCALES_RELATIVE empty: inverse-uniform short side in
    [256, 320] (L: [356, 446]) then a random crop, offsets in [0, size - crop - 1]."""
    from mvit_video.config import build_config, compose

    for name, scales, crop in [("ssv2_s_16x4", [256, 320], 224), ("ssv2_b_32x3", [256, 320], 224),
                               ("ssv2_l_40x3", [356, 446], 312)]:  # fmt: skip
        cfg = build_config(compose([f"+experiment={name}"]))
        t = build_train_transform(cfg.data, cfg.aug, random_flip=False)
        assert isinstance(t.crop, T.ShortSideJitterCrop), name
        assert (t.crop.min_size, t.crop.max_size, t.crop.crop_size, t.crop.inverse_uniform) == (*scales, crop, True)
        assert t.decode_short_side is None  # SSv2 frames are used as read
    random.seed(0)
    crop = T.ShortSideJitterCrop(10, 10, 8)
    video = torch.arange(10).view(1, 1, 1, 10).expand(1, 1, 10, 10)
    starts = {int(crop(video)[0, 0, 0, 0]) for _ in range(300)}
    assert starts == {0, 1}  # 10 - 8 = 2 is never drawn


def test_train_frames_resized_to_decode_short_side_first():
    """PySlowFast's Kinetics decoder returns frames at short side TRAIN_JITTER_SCALES[0]; the crop works on those."""
    cfg = make_cfg("kinetics", "none", {"data.train_crop_size": 32, "data.test_crop_size": 32,
                                       "data.train_jitter_scales": [40, 50]})
    seen = []

    class Recording(torch.nn.Module):
        def __init__(self, crop):
            super().__init__()
            self.inner = crop

        def forward(self, v):
            seen.append(tuple(v.shape))
            return self.inner(v)

    t = build_train_transform(cfg.data, cfg.aug, decode_short_side=40)
    t.crop = Recording(t.crop)
    t(_clip(t=2, h=96, w=128))
    assert seen == [(2, 3, 40, 53)]


@pytest.mark.slow
def test_aug_interpolation_is_honoured_or_rejected():
    """aug.interpolation reaches RandAugment's geometric ops as given (bicubic is not bilinear), and a value they
    cannot do is a ConfigError naming the key, even with augmentation off."""
    import dataclasses

    from mvit_video.utils.errors import ConfigError

    frame = _clip(t=1, h=30, w=40).permute(0, 3, 1, 2).contiguous()
    coeffs = T._rotate_coeffs(20.0, 30, 40)
    modes = {m: T._pil_affine(frame, coeffs, [128.0] * 3, m) for m in T.INTERPOLATIONS}
    assert not torch.equal(modes["bicubic"], modes["bilinear"]) and not torch.equal(modes["nearest"],
                                                                                     modes["bilinear"])
    for mode in T.INTERPOLATIONS:
        cfg = make_cfg("kinetics", "mvitv2", {"data.train_crop_size": 32, "aug.interpolation": mode})
        assert build_train_transform(cfg.data, cfg.aug).rand_augment.interp == mode
    for aug in ("mvitv2", "none"):
        with pytest.raises(ConfigError, match="aug.interpolation"):  # at the edge, when the config is typed
            make_cfg("kinetics", aug, {"aug.interpolation": "lanczos"})
        cfg = make_cfg("kinetics", aug)
        with pytest.raises(ConfigError, match="aug.interpolation: expected one of nearest, bilinear, bicubic"):
            build_train_transform(cfg.data, dataclasses.replace(cfg.aug, interpolation="lanczos"))
