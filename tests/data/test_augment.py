"""Augmentation on the device (data/augment.py): each op against PIL (what timm and PySlowFast run), SSv2's BGR
grey, the crop against F.interpolate, padding, the parameter draws against the old per-clip transform's (KS
tests), and the device and worker paths giving one batch."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps
from tiny import kinetics_cfg, make_cfg
from torchvision.transforms import v2

from mvit_video.data import build_dataset, build_loader, resolve_augment_on
from mvit_video.data import transforms as T
from mvit_video.data.augment import (
    OP_NAMES,
    AugSpec,
    BatchAugment,
    ClipParams,
    TrainAugment,
    affine_sample,
    rotate_coeffs,
)
from mvit_video.data.loader import DeviceLoader, train_collate
from mvit_video.utils.errors import ConfigError

H, W = 30, 40


def _frames(kind: str, seed: int = 0) -> np.ndarray:
    """uint8 [H,W,3]: random noise (every kernel tap matters) or a smooth colour pattern."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    return np.stack([(128 + 110 * np.sin(xx / 5.0 + c) * np.cos(yy / 7.0)).round().astype(np.uint8)
                     for c in range(3)], -1)


def _padded(img: np.ndarray, pad: tuple[int, int] = (5, 7)) -> torch.Tensor:
    """[1,1,3,H+ph,W+pw] float, the frame at the top left and garbage (77) in the padding: it must not leak in."""
    x = torch.full((1, 1, 3, H + pad[0], W + pad[1]), 77.0)
    x[..., :H, :W] = torch.from_numpy(img).permute(2, 0, 1).float()
    return x


def _ours(x: torch.Tensor) -> np.ndarray:
    return x[0, 0, :, :H, :W].permute(1, 2, 0).numpy().astype(np.int64)


_SIZES = torch.tensor([[H, W]])
_MODES = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


@pytest.mark.parametrize("interp", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("kind", ["noise", "smooth"])
def test_affine_sampler_matches_pil_transform(interp: str, kind: str):
    """timm's Rotate/Shear/Translate run PIL's Image.rotate/transform: within 1 grey level of it (float sums),
    fill 128 outside the frame, padding never read. PIL's affine bicubic is the a=-1 cubic (Geometry.c); torch's
    a=-0.75 and resize's a=-0.5 are several levels off on noise."""
    img = _frames(kind)
    pil = Image.fromarray(img)
    fill = (128, 128, 128)
    cases = [(rotate_coeffs(20.0, H, W), pil.rotate(20.0, resample=_MODES[interp], fillcolor=fill)),
             (rotate_coeffs(-13.7, H, W), pil.rotate(-13.7, resample=_MODES[interp], fillcolor=fill))]
    for co in [(1, 0.23, 0, 0, 1, 0), (1, 0, 0, -0.17, 1, 0), (1, 0, 0.45 * W * 0.63, 0, 1, 0),
               (1, 0, 0, 0, 1, -0.3 * H)]:
        cases.append((co, pil.transform(pil.size, Image.AFFINE, co, resample=_MODES[interp], fillcolor=fill)))
    for co, ref in cases:
        out = _ours(affine_sample(_padded(img), torch.tensor([co], dtype=torch.float64), _SIZES, interp, 128.0))
        diff = np.abs(out - np.asarray(ref, dtype=np.int64))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (co, diff.max(), (diff > 0).mean())
    if interp == "bicubic" and kind == "noise":
        old = T._pil_affine(torch.from_numpy(img).permute(2, 0, 1)[None], rotate_coeffs(20.0, H, W), [128.0] * 3,
                            "bicubic")[0].permute(1, 2, 0).numpy().astype(np.int64)
        assert np.abs(old - np.asarray(cases[0][1], dtype=np.int64)).max() > 5  # the old grid_sample kernel


def _pil_op(name: str, im: Image.Image, level: float, sign: float) -> Image.Image:
    """timm's increasing ops on a PIL image (timm/data/auto_augment.py level mappings)."""
    m = level / 10.0
    f = 1.0 + sign * m * 0.9
    return {
        "AutoContrast": lambda: ImageOps.autocontrast(im),
        "Equalize": lambda: ImageOps.equalize(im),
        "Invert": lambda: ImageOps.invert(im),
        # ImageOps.posterize's own LUT (Pillow 13 refuses 0 bits, which older Pillow, PySlowFast's, made black)
        "Posterize": lambda: im.point([i & ~(2 ** (8 - (4 - int(m * 4))) - 1) for i in range(256)] * 3),
        "Solarize": lambda: ImageOps.solarize(im, 256 - int(m * 256)),
        "SolarizeAdd": lambda: im.point([min(255, i + int(m * 110)) if i < 128 else i for i in range(256)] * 3),
        "Color": lambda: ImageEnhance.Color(im).enhance(f),
        "Contrast": lambda: ImageEnhance.Contrast(im).enhance(f),
        "Brightness": lambda: ImageEnhance.Brightness(im).enhance(f),
        "Sharpness": lambda: ImageEnhance.Sharpness(im).enhance(f),
    }[name]()


@pytest.mark.parametrize("name", ["AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "SolarizeAdd",
                                  "Color", "Contrast", "Brightness", "Sharpness"])
def test_colour_ops_match_pil_exactly(name: str):
    """The point and enhance ops reproduce PIL's integer results exactly (LUTs, truncating blends, the rounded 3×3
    smooth with its edge left alone, the rounded integer mean), on the valid part of a padded frame."""
    aug = BatchAugment(AugSpec(crop_size=16, mean=(0.0,) * 3, std=(1.0,) * 3, num_ops=1))
    for kind in ("noise", "smooth"):
        img = _frames(kind, seed=3)
        for level, sign in [(7.0, 1.0), (7.0, -1.0), (3.2, 1.0), (10.0, -1.0), (0.0, 1.0)]:
            out = _ours(aug._op(name, _padded(img), _SIZES, [level], [sign]))
            ref = np.asarray(_pil_op(name, Image.fromarray(img), level, sign), dtype=np.int64)
            assert np.array_equal(out, ref), (name, kind, level, sign, np.abs(out - ref).max())


@pytest.mark.parametrize("name", ["Color", "Contrast"])
def test_ssv2_grey_weights_the_channels_as_pil_on_bgr_frames(name: str):
    """PySlowFast reads SSv2 frames with cv2 (BGR) and hands them to PIL as RGB: on our RGB frames, bgr_grey gives
    exactly PIL's result on the BGR array, read back as RGB; and it differs from the RGB grey."""
    bgr = BatchAugment(AugSpec(crop_size=16, mean=(0.0,) * 3, std=(1.0,) * 3, num_ops=1, bgr_grey=True))
    rgb = BatchAugment(AugSpec(crop_size=16, mean=(0.0,) * 3, std=(1.0,) * 3, num_ops=1))
    img = _frames("smooth", seed=1)
    img[:, : W // 2, 0] = 250  # strongly coloured, so the channel weights matter
    for level, sign in [(7.0, 1.0), (9.0, -1.0)]:
        ours = _ours(bgr._op(name, _padded(img), _SIZES, [level], [sign]))
        ref = np.asarray(_pil_op(name, Image.fromarray(np.ascontiguousarray(img[..., ::-1])), level, sign))
        assert np.array_equal(ours, ref[..., ::-1].astype(np.int64)), (name, level)
        assert not np.array_equal(ours, _ours(rgb._op(name, _padded(img), _SIZES, [level], [sign])))


def _spec(**kw) -> AugSpec:
    base = dict(crop_size=24, mean=(0.45,) * 3, std=(0.225,) * 3)
    return AugSpec(**{**base, **kw})


def test_crop_is_interpolate_on_the_box():
    """RandomResizedCrop: F.interpolate(bilinear, align_corners=False) of the box; SSv2's jitter: of the resized
    frame, then the crop; the frame read from a padded batch. Float results (PySlowFast crops the normalised
    float clip: no rounding)."""
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 40, 56, 3), dtype=torch.uint8, generator=g)
    padded = torch.full((1, 3, 45, 60, 3), 77, dtype=torch.uint8)
    padded[0, :, :40, :56] = frames
    x = frames.permute(0, 3, 1, 2).float()
    rng = random.Random(0)
    for spec in (_spec(), _spec(scale=(), jitter_scales=(30, 50)), _spec(scale=(), jitter_scales=(40, 40))):
        spec = AugSpec(**{**spec.__dict__, "mean": (0.0,) * 3, "std": (1 / 255,) * 3, "random_flip": False})
        ta, aug = TrainAugment(spec), BatchAugment(spec)
        params = [ta.draw(40, 56, rng) for _ in range(20)]
        out = aug(padded, torch.tensor([[40, 56]]), torch.zeros(20, dtype=torch.long), params)
        for clip, p in zip(out, params):
            y, x0, a, b = p.box
            if spec.scale:
                ref = F.interpolate(x[..., y : y + a, x0 : x0 + b], size=(24, 24), mode="bilinear",
                                    align_corners=False)
            else:
                assert 0 <= y <= a - 24 - 1 or a == 24
                full = x if (a, b) == (40, 56) else F.interpolate(x, size=(a, b), mode="bilinear",
                                                                  align_corners=False)
                ref = full[..., y : y + 24, x0 : x0 + 24]
            assert (clip.permute(1, 0, 2, 3) - ref).abs().max() < 1e-3


def _all_ops_params(spec: AugSpec, h: int, w: int, seed: int) -> list[ClipParams]:
    """One clip per RandAugment op (each op in slot 0, others random), draws from `seed`."""
    ta = TrainAugment(spec)
    rng = random.Random(seed)
    out = []
    for op in range(len(OP_NAMES)):
        p = ta.draw(h, w, rng)
        out.append(ClipParams((op, *p.ops[1:]), (6.5, *p.levels[1:]), (-1.0, *p.signs[1:]), p.box, p.flip,
                              p.erase, p.noise_seed))
    return out


@pytest.mark.slow
def test_padding_and_batch_mates_do_not_change_a_clip():
    """A clip augmented in a padded batch beside a larger video equals it augmented alone: every op, the crop and
    the erasing read only the clip's own frame."""
    spec = _spec(num_ops=4, re_prob=1.0)
    aug = BatchAugment(spec)
    g = torch.Generator().manual_seed(1)
    small = torch.randint(0, 256, (3, 32, 44, 3), dtype=torch.uint8, generator=g)
    big = torch.randint(0, 256, (3, 40, 56, 3), dtype=torch.uint8, generator=g)
    p_small, p_big = _all_ops_params(spec, 32, 44, 0), _all_ops_params(spec, 40, 56, 1)
    batch = train_collate([
        {"frames": big, "params": p_big, "label": 0, "index": 0, "bad_paths": []},
        {"frames": small, "params": p_small, "label": 1, "index": 1, "bad_paths": []},
    ])
    assert batch["frames"].shape == (2, 3, 40, 56, 3) and batch["frame_sizes"].tolist() == [[40, 56], [32, 44]]
    assert batch["source"].tolist() == [0] * 15 + [1] * 15 and batch["label"].tolist() == [0] * 15 + [1] * 15
    together = aug(batch["frames"], batch["frame_sizes"], batch["source"], batch["params"])
    alone = aug(small[None], torch.tensor([[32, 44]]), torch.zeros(15, dtype=torch.long), p_small)
    assert together.shape == (30, 3, 3, 24, 24)
    assert (together[15:] - alone).abs().max() < 1e-5


def test_one_parameter_set_per_clip_and_erasing_noise_per_frame():
    """Identical frames stay identical through RandAugment, crop and flip (the parameters are per clip); the
    erasing box is the same on every frame, its noise fresh per frame, and a function of the noise seed alone."""
    spec = _spec(num_ops=4, magnitude=9.0, re_prob=1.0)
    aug, ta = BatchAugment(spec), TrainAugment(spec)
    frames = torch.from_numpy(_frames("smooth")).expand(6, H, W, 3).contiguous()
    params = [ta.draw(H, W, random.Random(s)) for s in range(12)]
    out = aug(frames[None], torch.tensor([[H, W]]), torch.zeros(12, dtype=torch.long), params)  # [12,3,6,24,24]
    for clip, p in zip(out, params):
        erased = torch.zeros(24, 24, dtype=torch.bool)
        for top, left, bh, bw in p.erase:
            erased[top : top + bh, left : left + bw] = True
        assert erased.any()
        assert torch.equal(clip[..., ~erased], clip[:, :1][..., ~erased].expand_as(clip[..., ~erased]))
        assert not torch.equal(clip[:, 0][:, erased], clip[:, 1][:, erased])
    again = aug(frames[None], torch.tensor([[H, W]]), torch.zeros(12, dtype=torch.long), params)
    assert torch.equal(out, again)


def test_rand_augment_runs_on_the_full_frame_with_fill_128():
    """A full-strength TranslateX moves the frame by 0.45 of its width before the crop: with a crop of the
    whole frame, that many columns are the fill 128 (normalised)."""
    spec = _spec(crop_size=40, num_ops=1, mean=(0.0,) * 3, std=(1 / 255,) * 3, random_flip=False)
    p = ClipParams((OP_NAMES.index("TranslateXRel"),), (10.0,), (1.0,), (0, 0, 30, 40))
    frames = torch.zeros(2, H, W, 3, dtype=torch.uint8)
    out = BatchAugment(spec)(frames[None], torch.tensor([[H, W]]), torch.zeros(1, dtype=torch.long), [p])
    filled = (out[0] == 128).all(0).all(0).all(0)
    assert int(filled.sum()) == 18  # 0.45 * 40 columns, on the right


# ---------------------------------------------------------------- the draws: KS tests against the old transform


def _ks(a: list[float], b: list[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|."""
    xa, xb = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([xa, xb])
    fa = np.searchsorted(xa, grid, side="right") / len(xa)
    fb = np.searchsorted(xb, grid, side="right") / len(xb)
    return float(np.abs(fa - fb).max())


def _ks_ok(a: list[float], b: list[float]) -> bool:
    """Not rejected at alpha 0.001 (c = 1.95): the two samples may come from one distribution."""
    n, m = len(a), len(b)
    return _ks(a, b) < 1.95 * math.sqrt((n + m) / (n * m))


N = 3000


@pytest.mark.slow
def test_ks_crop_scale_and_aspect_match_random_resized_crop():
    """torchvision's RandomResizedCrop (the old path) vs our draw, on a 256×340 frame: area fraction, aspect,
    offsets."""
    torch.manual_seed(0)
    rrc = v2.RandomResizedCrop(224, scale=(0.08, 1.0), ratio=(0.75, 1.3333), antialias=False)
    old = [rrc.make_params([torch.empty(3, 256, 340)]) for _ in range(N)]
    ta = TrainAugment(_spec(crop_size=224, aspect=(0.75, 1.3333)))
    rng = random.Random(0)
    new = [ta.draw(256, 340, rng).box for _ in range(N)]
    pairs = [([o["height"] * o["width"] / (256 * 340) for o in old], [h * w / (256 * 340) for _, _, h, w in new]),
             ([o["width"] / o["height"] for o in old], [w / h for _, _, h, w in new]),
             ([o["top"] / (256 - o["height"] + 1) for o in old], [y / (256 - h + 1) for y, _, h, _ in new])]
    for a, b in pairs:
        assert _ks_ok(a, b), _ks(a, b)
    shifted = [v * 1.1 for v in pairs[0][1]]
    assert not _ks_ok(pairs[0][0], shifted)  # the test can fail: a 10% larger area is caught


@pytest.mark.slow
def test_ks_short_side_jitter_matches_the_old_crop():
    """SSv2: inverse-uniform short side in [256, 320], offsets in [0, size - crop - 1]."""
    random.seed(0)
    old_crop = T.ShortSideJitterCrop(256, 320, 224, inverse_uniform=True)
    seen: list[int] = []
    orig = T.short_side_resize

    def recording(video, size):
        seen.append(size)
        return orig(video[..., :1, :, :], size)

    T.short_side_resize = recording
    try:
        for _ in range(400):
            old_crop(torch.zeros(1, 1, 240, 426))
    finally:
        T.short_side_resize = orig
    ta = TrainAugment(_spec(crop_size=224, scale=(), jitter_scales=(256, 320), inverse_uniform=True))
    rng = random.Random(1)
    new = [ta.draw(240, 426, rng).box[2] for _ in range(400)]
    assert _ks_ok(seen, new) and min(new) >= 256 and max(new) <= 320


def _old_rand_augment_draws(n: int) -> tuple[list[str], list[float]]:
    """(op names, magnitudes) the old RandAugmentVideo applied over n clips (recorded around its op table)."""
    ra = T.RandAugmentVideo(num_ops=4, magnitude=7.0, magnitude_std=0.5)
    names, levels = [], []
    for name, fn in list(ra.ops.items()):
        def rec(v, lvl, *a, _n=name):
            names.append(_n), levels.append(lvl)
            return v
        ra.ops[name] = rec
    random.seed(0)
    video = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    for _ in range(n):
        ra(video)
    return names, levels


@pytest.mark.slow
def test_ks_rand_augment_op_choice_and_magnitude_match_the_old_transform():
    """rand-m7-n4-mstd0.5-inc1: op frequencies (chi-square), applied ops per clip and magnitudes (KS) as the old
    per-clip RandAugment; signs half negative."""
    old_names, old_levels = _old_rand_augment_draws(N)
    ta = TrainAugment(_spec(num_ops=4))
    rng = random.Random(0)
    draws = [ta.draw(64, 80, rng) for _ in range(N)]
    new_names = [OP_NAMES[o] for p in draws for o in p.ops if o >= 0]
    new_levels = [lv for p in draws for o, lv in zip(p.ops, p.levels) if o >= 0]
    assert abs(len(new_names) - len(old_names)) < 4 * math.sqrt(N * 4 * 0.25)  # Binomial(4N, 0.5) counts
    assert _ks_ok(old_levels, new_levels)
    assert _ks_ok([OP_NAMES.index(x) for x in old_names], [OP_NAMES.index(x) for x in new_names])
    counts = np.array([new_names.count(x) for x in OP_NAMES], float)
    expected = len(new_names) / len(OP_NAMES)
    assert ((counts - expected) ** 2 / expected).sum() < 36.1  # chi-square, 14 dof, p = 0.001
    signs = [s for p in draws for o, s in zip(p.ops, p.signs) if o >= 0 and OP_NAMES[o] in ("Rotate", "Color")]
    assert abs(np.mean(np.array(signs) < 0) - 0.5) < 0.05


@pytest.mark.slow
def test_ks_erasing_box_matches_the_old_random_erasing():
    """Random erasing (prob 0.25, area 0.02..1/3, aspect 0.3..3.3) on the 224 crop: how often, box height,
    width and position, as the old RandomErasingCube."""
    random.seed(0)
    torch.manual_seed(0)
    erase = T.RandomErasingCube(0.25)
    old = []
    for _ in range(N):
        box = erase(torch.zeros(1, 1, 224, 224))[0, 0] != 0
        if box.any():
            ys, xs = box.nonzero(as_tuple=True)
            old.append((int(ys.min()), int(xs.min()), int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)))
    ta = TrainAugment(_spec(crop_size=224, re_prob=0.25))
    rng = random.Random(0)
    new = [b for _ in range(N) for b in ta.draw(256, 340, rng).erase]
    assert abs(len(new) - len(old)) < 4 * math.sqrt(N * 0.25 * 0.75) * 2
    for k in range(4):
        assert _ks_ok([b[k] for b in old], [b[k] for b in new]), k


# ---------------------------------------------------------------- the dataset and loader paths


def _cfg(list_dir, **over):
    return kinetics_cfg(list_dir, "mvitv2", **{"data.train_jitter_scales": [48, 60], **over})


def _batches(cfg, augment_on: str, workers: int = 0) -> list[dict]:
    import dataclasses

    cfg = dataclasses.replace(cfg, data_loader=dataclasses.replace(cfg.data_loader, augment_on=augment_on,
                                                                   num_workers=workers))
    ds = build_dataset(cfg, "train", device="cpu")
    assert ds.augment_on_device is (augment_on == "device")
    loader = build_loader(ds, "train", cfg.data_loader, batch_size=4, seed=cfg.seed, device="cpu")
    assert isinstance(loader, DeviceLoader) and len(loader) == 1
    loader.sampler.set_epoch(2)
    return list(loader)


@pytest.mark.slow
def test_device_and_worker_paths_make_the_same_batch(kinetics_list_dir):
    """Full k400 recipe (RandAugment, RRC, flip, erasing): the batch augmented in the training process equals the
    one augmented in the workers (one code), and does not depend on the worker count; one decode per video."""
    cfg = _cfg(kinetics_list_dir, **{"aug.re_prob": 1.0})
    on_device = _batches(cfg, "device")
    in_workers = _batches(cfg, "workers")
    with_workers = _batches(cfg, "device", workers=2)
    for other in (in_workers, with_workers):
        assert torch.equal(on_device[0]["index"], other[0]["index"])
        assert (on_device[0]["video"] - other[0]["video"]).abs().max() < 1e-4
    v = on_device[0]["video"]
    assert v.shape == (8, 3, 4, 32, 32) and v.dtype == torch.float32
    assert not torch.equal(v[0], v[1])  # the two clips of a video differ


@pytest.mark.slow
def test_augment_on_setting():
    assert resolve_augment_on("auto", "cpu") == "workers" and resolve_augment_on("auto", "cuda") == "device"
    assert resolve_augment_on("device", "cpu") == "device" and resolve_augment_on("workers", "cuda") == "workers"
    with pytest.raises(ConfigError, match="data_loader.augment_on"):
        resolve_augment_on("gpu", "cpu")
    assert make_cfg().data_loader.augment_on == "auto"
    with pytest.raises(ConfigError, match="augment_on"):
        make_cfg(overrides={"data_loader.augment_on": "gpu"})


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_augmentation_matches_cpu_and_prefetches(kinetics_list_dir):
    """On CUDA: the batched augmentation gives the CPU's result (erasing off: its noise generator differs per
    device), and the DeviceLoader hands over batches already on the GPU."""
    spec = _spec(num_ops=4)
    g = torch.Generator().manual_seed(2)
    frames = torch.randint(0, 256, (2, 3, 40, 56, 3), dtype=torch.uint8, generator=g)
    params = _all_ops_params(spec, 40, 56, 0)
    src = torch.tensor([i % 2 for i in range(15)])
    sizes = torch.tensor([[40, 56], [40, 56]])
    cpu = BatchAugment(spec)(frames, sizes, src, params)
    gpu = BatchAugment(spec)(frames.cuda(), sizes, src, params)
    assert gpu.is_cuda and (gpu.cpu() - cpu).abs().max() < 0.05  # a rare 1-level flip of a truncation
    cfg = _cfg(kinetics_list_dir)
    ds = build_dataset(cfg, "train", device="cuda")
    loader = build_loader(ds, "train", cfg.data_loader, batch_size=4, seed=0, device="cuda")
    for b in loader:
        assert b["video"].is_cuda and b["label"].is_cuda and b["video"].shape == (8, 3, 4, 32, 32)
