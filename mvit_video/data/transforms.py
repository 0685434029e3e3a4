"""Clip transforms on whole clips (one parameter set per clip), test-time views, and batch-level mixup/cutmix.

Train: RandomResizedCrop (or short-side jitter + random crop) -> flip -> RandAugment (timm rand-m7-n4-mstd0.5-inc1
semantics) -> normalise -> random erasing. (PySlowFast runs RandAugment on the full frames before the crop; here it
runs on the crop, which is cheaper and the same augmentation up to the translate/rotate reference size.) torchvision.transforms.v2 treats a `tv_tensors.Video` [T, C, H, W] as
one sample, so every frame gets the same crop, flip and ops. Test: PySlowFast's short-side resize and 1 or 3
crops (REFERENCE §5, §8).
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

from mvit_video.utils.errors import ConfigError

__all__ = [
    "RandAugmentVideo",
    "TrainTransform",
    "build_train_transform",
    "short_side_resize",
    "uniform_crop",
    "multi_view_crops",
    "test_views",
    "test_short_side",
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


def _affine(video: torch.Tensor, fill: list[float], interp, **kw) -> torch.Tensor:
    kw.setdefault("angle", 0.0)
    kw.setdefault("translate", [0, 0])
    kw.setdefault("scale", 1.0)
    kw.setdefault("shear", [0.0, 0.0])
    return TF.affine(video, interpolation=interp, fill=fill, **kw)


def _op_table(increasing: bool):
    """op name -> fn(video uint8 [T,C,H,W], level 0..10, fill, interp). timm's magnitude mappings."""

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

    def rotate(v, lvl, fill, interp):
        return TF.rotate(v, _signed(lvl / _MAX_LEVEL * 30.0), interpolation=interp, fill=fill)

    def shear(axis):
        def op(v, lvl, fill, interp):
            deg = math.degrees(math.atan(_signed(lvl / _MAX_LEVEL * 0.3)))
            return _affine(v, fill, interp, shear=[deg, 0.0] if axis == 0 else [0.0, deg], center=[0, 0])

        return op

    def translate(axis):
        def op(v, lvl, fill, interp):
            size = v.shape[-1] if axis == 0 else v.shape[-2]
            px = int(round(_signed(lvl / _MAX_LEVEL * 0.45) * size))
            return _affine(v, fill, interp, translate=[px, 0] if axis == 0 else [0, px])

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
        fill: Sequence[float] = (124.0, 116.0, 104.0),
        interpolation: str = "bicubic",
    ) -> None:
        super().__init__()
        self.num_ops, self.magnitude, self.magnitude_std, self.prob = num_ops, magnitude, magnitude_std, prob
        self.ops = _op_table(increasing)
        self.names = list(self.ops)
        self.fill = [float(x) for x in fill]
        # tensor affine/rotate support nearest and bilinear only: bicubic (timm's PIL default) maps to bilinear
        self.interp = v2.InterpolationMode.NEAREST if interpolation == "nearest" else v2.InterpolationMode.BILINEAR

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
        y = random.randint(0, h - self.crop_size) if h > self.crop_size else 0
        x = random.randint(0, w - self.crop_size) if w > self.crop_size else 0
        return video[..., y : y + self.crop_size, x : x + self.crop_size]


class TrainTransform(torch.nn.Module):
    """uint8 frames [T,H,W,3] -> float clip [3,T,crop,crop], normalised; one random parameter set per call."""

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
    ) -> None:
        super().__init__()
        if scale:
            # bilinear without antialias, as PySlowFast's F.interpolate-based random_resized_crop
            self.crop = v2.RandomResizedCrop(crop_size, scale=tuple(scale), ratio=tuple(aspect), antialias=False)
        else:
            self.crop = ShortSideJitterCrop(int(jitter_scales[0]), int(jitter_scales[1]), crop_size, inverse_uniform)
        self.flip = v2.RandomHorizontalFlip() if random_flip else None
        self.rand_augment = rand_augment
        self.mean, self.std = list(mean), list(std)
        # value="random": erase with per-pixel N(0,1) noise on the normalised clip (timm's mode "pixel")
        self.erase = [v2.RandomErasing(p=re_prob, value="random") for _ in range(re_count)] if re_prob > 0 else []

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        video = tv_tensors.Video(frames.permute(0, 3, 1, 2))  # [T,C,H,W] uint8
        video = self.crop(video)
        if self.flip is not None:
            video = self.flip(video)
        if self.rand_augment is not None:
            video = self.rand_augment(video)
        video = TF.to_dtype(video, torch.float32, scale=True)
        video = TF.normalize(video, self.mean, self.std)
        for erase in self.erase:
            video = erase(video)
        return video.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()  # [C,T,H,W]


def build_train_transform(cfg, random_flip: Optional[bool] = None) -> TrainTransform:
    """The train transform from cfg.data / cfg.aug; `random_flip` overrides data.random_flip (SSv2: False)."""
    d, a = cfg.data, cfg.aug
    ra = None
    re_prob = 0.0
    if a.enable:
        if a.aa_type:
            spec = parse_rand_augment(str(a.aa_type))
            ra = RandAugmentVideo(
                num_ops=spec["num_ops"],
                magnitude=spec["magnitude"],
                magnitude_std=spec["magnitude_std"],
                increasing=spec["increasing"],
                fill=[round(255 * m) for m in d.mean],
                interpolation=str(a.interpolation),
            )
        if a.re_mode != "pixel":
            raise ConfigError(f"aug.re_mode: only 'pixel' is supported, got {a.re_mode!r}")
        re_prob = float(a.re_prob)
    return TrainTransform(
        crop_size=int(d.train_crop_size),
        mean=list(d.mean),
        std=list(d.std),
        scale=list(d.train_jitter_scales_relative),
        aspect=list(d.train_jitter_aspect_relative),
        jitter_scales=list(d.train_jitter_scales),
        inverse_uniform=bool(d.inv_uniform_sample),
        random_flip=bool(d.random_flip) if random_flip is None else random_flip,
        rand_augment=ra,
        re_prob=re_prob,
        re_count=int(a.re_count),
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


def test_short_side(crop_size: int, num_spatial_crops: int, train_jitter_scales: Sequence[int]) -> int:
    """Short side before cropping (REFERENCE §8): test crop size with 3 crops, train_jitter_scales[0] with 1."""
    return int(crop_size) if num_spatial_crops > 1 else int(train_jitter_scales[0])


def test_views(
    frames: torch.Tensor,
    crop_size: int,
    num_spatial_crops: int,
    mean: Sequence[float],
    std: Sequence[float],
    short_side: Optional[int] = None,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """uint8 frames [T,H,W,3] of one clip -> float views [S,3,T,crop,crop] (multi_view_crops with one clip)."""
    return multi_view_crops(frames, [range(frames.shape[0])], crop_size, num_spatial_crops, mean, std, short_side, out)


def multi_view_crops(
    frames: torch.Tensor,
    clips: Sequence[Sequence[int]],
    crop_size: int,
    num_spatial_crops: int,
    mean: Sequence[float],
    std: Sequence[float],
    short_side: Optional[int] = None,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Decoded uint8 frames [F,H,W,3] and K temporal clips (T indices into frames each) -> float test views
    [K*S,3,T,crop,crop], view v = clip v // S, spatial crop v % S: short side resize, then 1 (center) or 3 crops.

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
    idxs = [1] if num_spatial_crops == 1 else [0, 1, 2]
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
    """Batch-level mixup/cutmix (torchvision v2; one of them per batch, cutmix with prob `switch_prob`), applied
    with probability `prob`, then label smoothing: (video [B,3,T,H,W], labels [B]) -> (video, soft [B,C])."""

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
        choices, weights = [], []
        if alpha > 0:
            choices.append(v2.MixUp(alpha=alpha, num_classes=num_classes))
            weights.append(1.0 - switch_prob if cutmix_alpha > 0 else 1.0)
        if cutmix_alpha > 0:
            choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
            weights.append(switch_prob if alpha > 0 else 1.0)
        self.mix = v2.RandomChoice(choices, p=weights) if choices else None

    def __call__(self, video: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = labels.long()
        if self.mix is not None and random.random() < self.prob:
            # MixUp/CutMix only index the batch dim (first) and H, W (last two): wrapping [B,3,T,H,W] as a
            # 5-D Video passes their shape check without a copy
            mixed, target = self.mix(tv_tensors.Video(video), labels)
            video = mixed.as_subclass(torch.Tensor)
        else:
            target = F.one_hot(labels, self.num_classes).to(video.dtype if video.is_floating_point() else torch.float32)
        target = target * (1.0 - self.smoothing) + self.smoothing / self.num_classes
        return video, target


def build_mixup(cfg, num_classes: int) -> Optional[Callable]:
    """MixupCutmix from cfg.mixup, or None when mixup.enable is false (the engine smooths labels itself)."""
    m = cfg.mixup
    if not m.enable:
        return None
    return MixupCutmix(
        num_classes,
        alpha=float(m.alpha),
        cutmix_alpha=float(m.cutmix_alpha),
        prob=float(m.prob),
        switch_prob=float(m.switch_prob),
        label_smoothing=float(m.label_smooth_value),
    )


# not pytest tests, despite the names (tests import them)
test_views.__test__ = False
test_short_side.__test__ = False
