"""Clip transforms on whole clips (one parameter set per clip), test-time views, and batch-level mixup/cutmix.

The datasets train with data/augment.py (parameters drawn in the workers, applied batched on the training device,
with PIL's own arithmetic); TrainTransform and its parts below are the earlier per-clip implementation, kept for
callers that build it directly and as the reference the distribution tests compare the new draws against.

Train, in PySlowFast's order (slowfast/datasets/utils.py aug_frame): [Kinetics: short side to train_jitter_scales[0],
as its decoder does] -> RandAugment on the full frames (timm rand-m7-n4-mstd0.5-inc1 semantics, fill 128, bicubic)
-> RandomResizedCrop (or short-side jitter + random crop) -> flip -> normalise -> random erasing (one box for the
clip, fresh noise per frame). torchvision.transforms.v2 treats a `tv_tensors.Video` [T, C, H, W] as one sample, so
every frame gets the same crop, flip and ops. Test: PySlowFast's short-side resize and 1 or 3 crops (REFERENCE §5,
§8). Mixup/CutMix pair each clip with the mirrored batch (PySlowFast's flip(0)), never with its neighbour.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from mvit_video.settings import AugConfig, DataConfig, MixupConfig
from mvit_video.utils.errors import ConfigError

__all__ = [
    "RandAugmentVideo",
    "RandomErasingCube",
    "TrainTransform",
    "build_train_transform",
    "short_side_resize",
    "uniform_crop",
    "multi_view_crops",
    "eval_short_side",
    "build_mixup",
    "MixupCutmix",
    "ShortSideJitterCrop",
    "parse_rand_augment",
]

# ---------------------------------------------------------------- RandAugment (timm / PySlowFast semantics)

_MAX_LEVEL = 10.0  # timm's _LEVEL_DENOM: magnitudes are on a 0..10 scale


def parse_rand_augment(spec: str) -> dict:
    """Parse timm's `rand-m7-n4-mstd0.5-inc1` into {magnitude, num_ops, magnitude_std, increasing}."""
    parts = spec.split("-")
    if not parts or parts[0] != "rand":
        raise ValueError(f"aug.aa_type: expected 'rand-...' (e.g. rand-m7-n4-mstd0.5-inc1), got {spec!r}")
    out = {"magnitude": 9.0, "num_ops": 2, "magnitude_std": 0.0, "increasing": False}
    for p in parts[1:]:
        if p.startswith("mstd"):
            out["magnitude_std"] = float(p[4:])
        elif p.startswith("inc"):
            out["increasing"] = bool(int(p[3:]))
        elif p.startswith("m"):
            out["magnitude"] = float(p[1:])
        elif p.startswith("n"):
            out["num_ops"] = int(p[1:])
        else:
            raise ValueError(f"aug.aa_type: unknown part {p!r} in {spec!r}")
    return out


def _signed(x: float) -> float:
    return -x if random.random() < 0.5 else x


def _pil_affine(video: torch.Tensor, coeffs: Sequence[float], fill: list[float], mode: str) -> torch.Tensor:
    """PIL's Image.transform(AFFINE, coeffs) on uint8 [T,C,H,W]: output pixel centre (x, y) samples the input at
    (a x + b y + c, d x + e y + f); outside the input -> `fill`. torchvision's tensor affine has no bicubic, so
    grid_sample does the sampling (`mode` nearest | bilinear | bicubic; torch's bicubic kernel is a=-0.75, PIL's
    Image.transform a=-1: data/augment.py affine_sample is the exact one)."""
    t, c, h, w = video.shape
    a, b, cc, d, e, f = (float(v) for v in coeffs)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij"
    )
    xin, yin = a * xs + b * ys + cc, d * xs + e * ys + f
    grid = torch.stack([2 * xin / w - 1, 2 * yin / h - 1], dim=-1).to(torch.float32)  # align_corners=False
    # border padding: PIL clamps the neighbours of a point inside the image; points outside get the fill below
    out = F.grid_sample(video.float(), grid.expand(t, h, w, 2), mode=mode, padding_mode="border", align_corners=False)
    outside = ((xin < 0) | (xin >= w) | (yin < 0) | (yin >= h)).to(torch.bool)
    out = torch.where(outside, torch.tensor(fill, dtype=out.dtype).view(1, c, 1, 1), out)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _rotate_coeffs(degrees: float, h: int, w: int) -> tuple[float, ...]:
    """PIL's Image.rotate(degrees) (counter-clockwise about the centre) as AFFINE coefficients."""
    rad = -math.radians(degrees)
    a, b, d, e = math.cos(rad), math.sin(rad), -math.sin(rad), math.cos(rad)
    cx, cy = w / 2.0, h / 2.0
    return a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy


def _op_table(increasing: bool):
    """op name -> fn(video uint8 [T,C,H,W], level 0..10, fill, interp mode). timm's magnitude mappings."""

    def posterize(v, lvl, *_):
        # timm: increasing -> 4 - int(level * 0.4) bits (level 10 = 0 bits = black, as PIL); else int(level * 0.4)
        bits = 4 - int(lvl / _MAX_LEVEL * 4) if increasing else int(lvl / _MAX_LEVEL * 4)
        return TF.posterize(v, min(max(bits, 0), 8))

    def solarize(v, lvl, *_):
        thr = 256 - int(lvl / _MAX_LEVEL * 256) if increasing else int(lvl / _MAX_LEVEL * 256)
        return TF.solarize(v, float(thr)) if thr < 256 else v

    def solarize_add(v, lvl, *_):
        add = int(lvl / _MAX_LEVEL * 110)
        added = (v.to(torch.int16) + add).clamp_(0, 255).to(torch.uint8)
        return torch.where(v < 128, added, v)

    def enhance(fn):
        def op(v, lvl, *_):
            if increasing:
                factor = 1.0 + _signed(lvl / _MAX_LEVEL * 0.9)
            else:
                factor = lvl / _MAX_LEVEL * 1.8 + 0.1
            return fn(v, factor)

        return op

    # geometric ops as timm builds them on PIL images (coefficients of Image.transform / Image.rotate)
    def rotate(v, lvl, fill, interp):
        return _pil_affine(v, _rotate_coeffs(_signed(lvl / _MAX_LEVEL * 30.0), *v.shape[-2:]), fill, interp)

    def shear(axis):
        def op(v, lvl, fill, interp):
            k = _signed(lvl / _MAX_LEVEL * 0.3)
            return _pil_affine(v, (1, k, 0, 0, 1, 0) if axis == 0 else (1, 0, 0, k, 1, 0), fill, interp)

        return op

    def translate(axis):
        def op(v, lvl, fill, interp):
            pct = _signed(lvl / _MAX_LEVEL * 0.45)  # of the width (X) / height (Y), fractional pixels as PIL
            coeffs = (1, 0, pct * v.shape[-1], 0, 1, 0) if axis == 0 else (1, 0, 0, 0, 1, pct * v.shape[-2])
            return _pil_affine(v, coeffs, fill, interp)

        return op

    return {
        "AutoContrast": lambda v, *_: TF.autocontrast(v),
        "Equalize": lambda v, *_: TF.equalize(v),
        "Invert": lambda v, *_: TF.invert(v),
        "Rotate": rotate,
        "Posterize": posterize,
        "Solarize": solarize,
        "SolarizeAdd": solarize_add,
        "Color": enhance(TF.adjust_saturation),
        "Contrast": enhance(TF.adjust_contrast),
        "Brightness": enhance(TF.adjust_brightness),
        "Sharpness": enhance(TF.adjust_sharpness),
        "ShearX": shear(0),
        "ShearY": shear(1),
        "TranslateXRel": translate(0),
        "TranslateYRel": translate(1),
    }


INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def check_interpolation(interpolation: str) -> str:
    """aug.interpolation, checked: RandAugment's geometric ops (rotate, shear, translate) sample with it, as timm's
    do on PIL images; crops and resizes stay bilinear, as PySlowFast's (its INTERPOLATION reaches only RandAugment)."""
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"aug.interpolation: expected one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    return interpolation


class RandAugmentVideo(torch.nn.Module):
    """timm RandAugment on a uint8 video [T,C,H,W]: `num_ops` ops drawn uniformly, each applied with prob 0.5 and
    magnitude ~ N(magnitude, magnitude_std) clipped to [0, 10] drawn per op application and shared by all frames.

    torchvision's RandAugment has integer magnitude bins and no magnitude std; the op set here is timm's
    `_RAND_INCREASING_TRANSFORMS` (PySlowFast copies timm), applied with torchvision.transforms.v2 functionals.
    """

    def __init__(
        self,
        num_ops: int = 4,
        magnitude: float = 7.0,
        magnitude_std: float = 0.5,
        increasing: bool = True,
        prob: float = 0.5,
        fill: Sequence[float] = (128.0, 128.0, 128.0),
        interpolation: str = "bicubic",
    ) -> None:
        super().__init__()
        self.num_ops, self.magnitude, self.magnitude_std, self.prob = num_ops, magnitude, magnitude_std, prob
        self.ops = _op_table(increasing)
        self.names = list(self.ops)
        # PySlowFast's create_random_augment passes no img_mean, so timm's default fill (128, 128, 128) is used
        self.fill = [float(x) for x in fill]
        self.interp = check_interpolation(interpolation)

    def sample_level(self) -> float:
        """One magnitude draw (timm: gaussian around `magnitude`, clipped to [0, 10])."""
        if self.magnitude_std > 0:
            return min(_MAX_LEVEL, max(0.0, random.gauss(self.magnitude, self.magnitude_std)))
        return self.magnitude

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        for _ in range(self.num_ops):
            name = random.choice(self.names)  # timm draws ops with replacement
            if random.random() > self.prob:
                continue
            out = self.ops[name](video.as_subclass(torch.Tensor), self.sample_level(), self.fill, self.interp)
            video = tv_tensors.wrap(out, like=video) if isinstance(video, tv_tensors.Video) else out
        return video


# ---------------------------------------------------------------- train transform


class ShortSideJitterCrop(torch.nn.Module):
    """PySlowFast's older path: short side to a size in [min, max] (or inverse-uniform), then a random crop."""

    def __init__(self, min_size: int, max_size: int, crop_size: int, inverse_uniform: bool = False) -> None:
        super().__init__()
        self.min_size, self.max_size, self.crop_size, self.inverse_uniform = min_size, max_size, crop_size, inverse_uniform

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if self.inverse_uniform:
            size = int(round(1.0 / random.uniform(1.0 / self.max_size, 1.0 / self.min_size)))
        else:
            size = int(round(random.uniform(self.min_size, self.max_size)))
        video = short_side_resize(video, max(size, self.crop_size))  # never smaller than the crop
        h, w = video.shape[-2:]
        # offsets in [0, H - crop - 1]: PySlowFast's np.random.randint(0, H - crop) never draws the last one
        y = random.randint(0, h - self.crop_size - 1) if h > self.crop_size else 0
        x = random.randint(0, w - self.crop_size - 1) if w > self.crop_size else 0
        return video[..., y : y + self.crop_size, x : x + self.crop_size]


class RandomErasingCube:
    """PySlowFast's random erasing (slowfast/datasets/random_erasing.py, timm semantics, cube=True) on a normalised
    clip [T,C,H,W]: with probability `probability`, `count` (1..max_count) boxes, each the same on every frame and
    filled with fresh per-pixel N(0,1) noise on each frame ("pixel" mode); up to 100 tries per box, area in
    [min_area, max_area] / count of the frame, log-uniform aspect in [min_aspect, 1 / min_aspect]."""

    def __init__(
        self,
        probability: float,
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
        max_count: int = 1,
        attempts: int = 100,
    ) -> None:
        self.probability, self.min_area, self.max_area = probability, min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
        self.max_count, self.attempts = max(1, int(max_count)), attempts

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        if random.random() > self.probability:
            return video
        t, c, h, w = video.shape
        count = 1 if self.max_count == 1 else random.randint(1, self.max_count)
        for _ in range(count):
            for _ in range(self.attempts):
                area = random.uniform(self.min_area, self.max_area) * h * w / count
                aspect = math.exp(random.uniform(*self.log_aspect))
                bh, bw = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if bw < w and bh < h:
                    top, left = random.randint(0, h - bh), random.randint(0, w - bw)
                    video[:, :, top : top + bh, left : left + bw] = torch.randn(t, c, bh, bw, dtype=video.dtype)
                    break
        return video


class TrainTransform(torch.nn.Module):
    """uint8 frames [T,H,W,3] -> float clip [3,T,crop,crop], normalised; one random parameter set per call.

    decode_short_side: resize the decoded frames to this short side first (PySlowFast's Kinetics decoder does this
    with TRAIN_JITTER_SCALES[0] before any augmentation; None keeps the frames as decoded, as its SSv2 JPEGs)."""

    def __init__(
        self,
        crop_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        scale: Sequence[float] = (0.08, 1.0),
        aspect: Sequence[float] = (0.75, 4 / 3),
        jitter_scales: Sequence[int] = (256, 320),
        inverse_uniform: bool = False,
        random_flip: bool = True,
        rand_augment: Optional[RandAugmentVideo] = None,
        re_prob: float = 0.0,
        re_count: int = 1,
        decode_short_side: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.decode_short_side = decode_short_side
        if scale:
            # bilinear without antialias, as PySlowFast's F.interpolate-based random_resized_crop
            self.crop = v2.RandomResizedCrop(crop_size, scale=tuple(scale), ratio=tuple(aspect), antialias=False)
        else:
            self.crop = ShortSideJitterCrop(int(jitter_scales[0]), int(jitter_scales[1]), crop_size, inverse_uniform)
        self.flip = v2.RandomHorizontalFlip() if random_flip else None
        self.rand_augment = rand_augment
        self.mean, self.std = list(mean), list(std)
        self.erase = RandomErasingCube(re_prob, max_count=re_count) if re_prob > 0 else None

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        video = tv_tensors.Video(frames.permute(0, 3, 1, 2))  # [T,C,H,W] uint8
        if self.decode_short_side:
            video = short_side_resize(video, int(self.decode_short_side))  # no-op when already that size
        if self.rand_augment is not None:
            video = self.rand_augment(video)  # on the full frames, before the crop (PySlowFast's aug_frame)
        video = self.crop(video)
        if self.flip is not None:
            video = self.flip(video)
        video = TF.to_dtype(video, torch.float32, scale=True)
        video = TF.normalize(video, self.mean, self.std)
        video = video.as_subclass(torch.Tensor)
        if self.erase is not None:
            video = self.erase(video)
        return video.permute(1, 0, 2, 3).contiguous()  # [C,T,H,W]


def build_train_transform(data: DataConfig, aug: AugConfig, random_flip: Optional[bool] = None,
                          decode_short_side: Optional[int] = None) -> TrainTransform:
    """The train transform of the data.* and aug.* settings; `random_flip` overrides data.random_flip (SSv2:
    False); `decode_short_side` as TrainTransform (Kinetics: data.train_jitter_scales[0])."""
    check_interpolation(aug.interpolation)  # also when unused: a value that does nothing must not pass silently
    ra = None
    re_prob = 0.0
    if aug.enable:
        if aug.aa_type:
            spec = parse_rand_augment(aug.aa_type)
            ra = RandAugmentVideo(
                num_ops=spec["num_ops"],
                magnitude=spec["magnitude"],
                magnitude_std=spec["magnitude_std"],
                increasing=spec["increasing"],
                interpolation=aug.interpolation,
            )
        if aug.re_mode != "pixel":
            raise ConfigError(f"aug.re_mode: only 'pixel' is supported, got {aug.re_mode!r}")
        re_prob = aug.re_prob
    return TrainTransform(
        crop_size=data.train_crop_size,
        mean=list(data.mean),
        std=list(data.std),
        scale=list(data.train_jitter_scales_relative),
        aspect=list(data.train_jitter_aspect_relative),
        jitter_scales=list(data.train_jitter_scales),
        inverse_uniform=data.inv_uniform_sample,
        random_flip=data.random_flip if random_flip is None else random_flip,
        rand_augment=ra,
        re_prob=re_prob,
        re_count=aug.re_count,
        decode_short_side=decode_short_side,
    )


# ---------------------------------------------------------------- test views


def short_side_resize(video: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [..., H, W] so the short side is `size` (long side floor-scaled), bilinear, as PySlowFast."""
    h, w = video.shape[-2:]
    if min(h, w) == size:
        return video
    if w < h:
        new_w, new_h = size, int(math.floor(h / w * size))
    else:
        new_h, new_w = size, int(math.floor(w / h * size))
    lead = video.shape[:-3]
    x = video.reshape(-1, *video.shape[-3:])
    is_uint8 = x.dtype == torch.uint8
    x = F.interpolate(x.float() if is_uint8 else x, size=(new_h, new_w), mode="bilinear", align_corners=False)
    if is_uint8:
        x = x.round_().clamp_(0, 255).to(torch.uint8)
    out = x.reshape(*lead, x.shape[-3], new_h, new_w)
    return tv_tensors.wrap(out, like=video) if isinstance(video, tv_tensors.Video) else out


def uniform_crop(video: torch.Tensor, size: int, spatial_idx: int) -> torch.Tensor:
    """Crop [..., H, W] to size×size: spatial_idx 0/1/2 = left(top)/center/right(bottom) along the long side."""
    h, w = video.shape[-2:]
    y = int(math.ceil((h - size) / 2))
    x = int(math.ceil((w - size) / 2))
    if h > w:
        if spatial_idx == 0:
            y = 0
        elif spatial_idx == 2:
            y = h - size
    else:
        if spatial_idx == 0:
            x = 0
        elif spatial_idx == 2:
            x = w - size
    return video[..., y : y + size, x : x + size]


def eval_short_side(crop_size: int, num_spatial_crops: int, train_jitter_scales: Sequence[int]) -> int:
    """Short side before cropping (REFERENCE §8): test crop size with 3 crops, train_jitter_scales[0] with 1."""
    return int(crop_size) if num_spatial_crops > 1 else int(train_jitter_scales[0])


def multi_view_crops(
    frames: torch.Tensor,
    clips: Sequence[Sequence[int]],
    crop_size: int,
    num_spatial_crops: int,
    mean: Sequence[float],
    std: Sequence[float],
    short_side: Optional[int] = None,
    out: Optional[torch.Tensor] = None,
    one_crop_index: int = 1,
) -> torch.Tensor:
    """Decoded uint8 frames [F,H,W,3] and K temporal clips (T indices into frames each) -> float test views
    [K*S,3,T,crop,crop], view v = clip v // S, spatial crop v % S: short side resize, then 1 (center, or
    `one_crop_index`: PySlowFast's SSv2 takes 0, left/top) or 3 crops.

    The frames come from one decode of the union of the clips: a frame shared by several clips is resized once,
    and each view frame is copied exactly once, from the (resized) frames straight into its slot of `out`
    (float32, allocated when None), with no per-clip gather in between. `out` is then normalised in place,
    (x - 255*mean) / (255*std): per value the same two float ops as (crop - mean) / std on each view.
    """
    if num_spatial_crops not in (1, 3):
        raise ValueError(f"num_spatial_crops must be 1 or 3, got {num_spatial_crops}")
    lengths = {len(c) for c in clips}
    if len(lengths) != 1:
        raise ValueError(f"multi_view_crops: all clips need the same number of frames, got {sorted(lengths)}")
    video = frames.permute(0, 3, 1, 2)  # [F,C,H,W], channels-last memory: no copy
    size = int(short_side if short_side is not None else crop_size)
    if size < crop_size:
        raise ValueError(f"multi_view_crops: short side {size} is smaller than the crop {crop_size}")
    if min(video.shape[-2:]) != size:
        video = short_side_resize(video.float(), size)  # (only when needed: the copy_ below converts uint8 itself)
    idxs = [one_crop_index] if num_spatial_crops == 1 else [0, 1, 2]
    shape = (len(clips) * len(idxs), 3, lengths.pop(), crop_size, crop_size)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32)
    elif tuple(out.shape) != shape or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(
            f"multi_view_crops: out must be a contiguous float32 {list(shape)}, got {out.dtype} {list(out.shape)}"
        )
    crops = [uniform_crop(video, crop_size, i) for i in idxs]  # views [F,C,crop,crop]
    m = (torch.tensor(mean, dtype=out.dtype) * 255.0).view(1, 3, 1, 1, 1)  # broadcast over [S,C,T,h,w]
    s = (torch.tensor(std, dtype=out.dtype) * 255.0).view(1, 3, 1, 1, 1)
    n = len(idxs)
    for k, clip in enumerate(clips):
        views = out[k * n : (k + 1) * n]
        for j, crop in enumerate(crops):
            for t, f in enumerate(clip):
                views[j, :, t].copy_(crop[f])
        views.sub_(m).div_(s)  # per clip, while its views are still warm in cache
    return out


# ---------------------------------------------------------------- mixup / cutmix


class MixupCutmix:
    """Batch-level mixup/cutmix as PySlowFast (slowfast/datasets/mixup.py): with probability `prob`, cutmix (prob
    `switch_prob`) or mixup, each clip paired with the mirrored batch `flip(0)`; then label smoothing:
    (video [B,3,T,H,W], labels [B]) -> (video, soft targets [B,C]).

    Not torchvision.transforms.v2.MixUp/CutMix: they pair each clip with its neighbour (`roll(1)`), and with
    repeated augmentation (data.num_sample 2) a clip's neighbour is often the other clip of the same video."""

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
    ) -> None:
        self.num_classes, self.prob, self.smoothing = num_classes, prob, label_smoothing
        self.alpha, self.cutmix_alpha, self.switch_prob = alpha, cutmix_alpha, switch_prob

    def sample(self) -> tuple[float, bool]:
        """(lam, use_cutmix); lam 1.0 = no mixing. Beta draws as PySlowFast's _get_mixup_params."""
        if not (self.alpha > 0 or self.cutmix_alpha > 0) or float(torch.rand(())) >= self.prob:
            return 1.0, False
        if self.alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = float(torch.rand(())) < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        a = self.cutmix_alpha if use_cutmix else self.alpha
        return float(torch.distributions.Beta(a, a).sample()), use_cutmix

    @staticmethod
    def cutmix_box(h: int, w: int, lam: float) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1): a box of side sqrt(1 - lam) of the frame around a uniform centre, clipped to it."""
        ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(h * ratio), int(w * ratio)
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        return (
            min(max(cy - cut_h // 2, 0), h),
            min(max(cy + cut_h // 2, 0), h),
            min(max(cx - cut_w // 2, 0), w),
            min(max(cx + cut_w // 2, 0), w),
        )

    def __call__(self, video: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = labels.long()
        lam, use_cutmix = self.sample()
        if lam != 1.0:
            partner = video.flip(0)  # clip i with clip B-1-i (PySlowFast), not clip i-1
            if use_cutmix:
                y0, y1, x0, x1 = self.cutmix_box(video.shape[-2], video.shape[-1], lam)
                video = video.clone()
                video[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
                lam = 1.0 - (y1 - y0) * (x1 - x0) / float(video.shape[-2] * video.shape[-1])  # the box as clipped
            else:
                video = video * lam + partner * (1.0 - lam)
        dtype = video.dtype if video.is_floating_point() else torch.float32
        one_hot = F.one_hot(labels, self.num_classes).to(dtype)
        target = one_hot * lam + one_hot.flip(0) * (1.0 - lam)
        target = target * (1.0 - self.smoothing) + self.smoothing / self.num_classes
        return video, target


def build_mixup(mixup: MixupConfig, num_classes: int) -> Optional[Callable]:
    """MixupCutmix of the mixup.* settings, or None when mixup.enable is false (the engine smooths labels itself)."""
    if not mixup.enable:
        return None
    return MixupCutmix(
        num_classes,
        alpha=mixup.alpha,
        cutmix_alpha=mixup.cutmix_alpha,
        prob=mixup.prob,
        switch_prob=mixup.switch_prob,
        label_smoothing=mixup.label_smooth_value,
    )
