"""Training augmentation in two halves: the loader workers draw each clip's random parameters, the training process
applies them to the whole batch on its device.

Worker side (`TrainAugment.prepare` / `.draw`): only the per-video work (Kinetics: short side to
train_jitter_scales[0], as PySlowFast's decoder) and every random draw of a clip -- RandAugment's ops, magnitudes
and signs, the crop box, the flip, the erasing boxes and a noise seed -- into a `ClipParams` record. The draws come
from the item's seeded RNG (data/base.py seeded_rngs), so they depend on (seed, epoch, index, retry) alone.

Device side (`BatchAugment`): uint8 frames of the batch's videos (zero-padded to one size, each clip's valid H×W
carried beside) -> float clips [B,3,T,crop,crop], in PySlowFast's order (slowfast/datasets/kinetics.py _aug_frame):
RandAugment on the full frames (timm rand-m7-n4-mstd0.5-inc1 on PIL images: each op slot vectorised over the clips
that drew it, with PIL's own arithmetic: its affine sampler, LUTs, blends and 3×3 smooth) -> crop + resize
(bilinear, no antialias: F.interpolate(align_corners=False) on each clip's crop box) -> flip ->
normalise -> random erasing (fresh N(0,1) noise per frame from the clip's noise seed).

Nothing is composed: each RandAugment op resamples once and rounds to uint8 as PIL does, then the crop resamples
once. Composing the geometric ops (or them with the crop) would skip PIL's intermediate rounding and fill, and mix
bicubic with the crop's bilinear, which PySlowFast never does.

Two PySlowFast facts reproduced here: PIL's Image.transform/rotate bicubic is the a=-1 cubic (its Geometry.c
BICUBIC macro; Image.resize uses a=-0.5, torch's grid_sample a=-0.75), with the result truncated; and PySlowFast reads
SSv2 frames as BGR (cv2), so for SSv2 the grey of Color and Contrast weights the channels swapped (`bgr_grey`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from mvit_video.data.transforms import check_interpolation, parse_rand_augment
from mvit_video.utils.errors import ConfigError

__all__ = ["OP_NAMES", "AugSpec", "ClipParams", "TrainAugment", "BatchAugment", "affine_sample", "crop_resize",
           "rotate_coeffs", "build_aug_spec"]

# timm's _RAND_INCREASING_TRANSFORMS, in its order (op choice is uniform over this tuple)
OP_NAMES = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_GEOMETRIC = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"})
_ENHANCE = frozenset({"Color", "Contrast", "Brightness", "Sharpness"})
_MAX_LEVEL = 10.0  # timm's _LEVEL_DENOM
_PIL_CUBIC_A = -1.0  # PIL's Geometry.c BICUBIC (transform, rotate); not resize's -0.5
_GREY_RGB = (19595, 38470, 7471)  # PIL's RGB -> L: (r*19595 + g*38470 + b*7471 + 0x8000) >> 16


@dataclass(frozen=True)
class AugSpec:
    """The run's augmentation settings (what every clip shares); built once from data.* and aug.*."""

    crop_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: tuple[float, ...] = (0.08, 1.0)  # RandomResizedCrop area; () = short-side jitter + random crop
    aspect: tuple[float, ...] = (0.75, 4 / 3)
    jitter_scales: tuple[int, int] = (256, 320)
    inverse_uniform: bool = False
    random_flip: bool = True
    num_ops: int = 0  # RandAugment op slots; 0 = off
    magnitude: float = 7.0
    magnitude_std: float = 0.5
    increasing: bool = True
    prob: float = 0.5
    interpolation: str = "bicubic"  # RandAugment geometry (PIL's kernels)
    fill: float = 128.0  # timm's default fill; PySlowFast passes no img_mean
    bgr_grey: bool = False  # SSv2: PySlowFast hands BGR frames to PIL as if RGB
    re_prob: float = 0.0
    re_count: int = 1
    re_min_area: float = 0.02
    re_max_area: float = 1 / 3
    re_min_aspect: float = 0.3
    re_attempts: int = 100
    decode_short_side: Optional[int] = None  # Kinetics: train_jitter_scales[0]; None: frames as decoded


@dataclass(frozen=True)
class ClipParams:
    """Every random draw of one clip's augmentation.

    ops/levels/signs: per RandAugment slot the op index into OP_NAMES (-1: the slot's prob-0.5 draw skipped it),
    its magnitude (0..10) and sign (+-1). box: RandomResizedCrop's (top, left, height, width) in the frame; with
    short-side jitter (AugSpec.scale empty) (top, left, resized height, resized width): the frame resized to that
    size, then the crop at (top, left). erase: (top, left, h, w) boxes on the crop; noise_seed seeds their noise."""

    ops: tuple[int, ...] = ()
    levels: tuple[float, ...] = ()
    signs: tuple[float, ...] = ()
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    flip: bool = False
    erase: tuple[tuple[int, int, int, int], ...] = ()
    noise_seed: int = 0


# ---------------------------------------------------------------- worker side: per-video work and the draws


def _resize_short_side_u8(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [T,H,W,3] -> short side `size` (long side floored), bilinear as F.interpolate, rounded to uint8."""
    t, h, w, _ = frames.shape
    if min(h, w) == size:
        return frames
    new_h, new_w = (int(math.floor(h / w * size)), size) if w < h else (size, int(math.floor(w / h * size)))
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(new_h, new_w), mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class TrainAugment:
    """The worker half: `prepare(frames)` does the per-video work, `draw(h, w)` one clip's ClipParams; `apply`
    runs the device half on CPU (data_loader.augment_on=workers: the same code, in the worker)."""

    def __init__(self, spec: AugSpec) -> None:
        self.spec = spec
        self._applier: Optional[BatchAugment] = None

    # test_datasets and users read these two as they did on the old TrainTransform
    @property
    def decode_short_side(self) -> Optional[int]:
        return self.spec.decode_short_side

    @property
    def flip(self) -> Optional[bool]:
        return True if self.spec.random_flip else None

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [T,H,W,3] as decoded -> as augmentation starts (Kinetics: short side to decode_short_side)."""
        if self.spec.decode_short_side:
            return _resize_short_side_u8(frames, int(self.spec.decode_short_side))
        return frames

    def draw(self, h: int, w: int, rng: random.Random | None = None) -> ClipParams:
        """One clip's draws for frames of h×w, from `rng` (default: python's global RNG, which the dataset seeds
        per item)."""
        r = rng if rng is not None else random  # the module-level functions: the RNG that random.seed() seeds
        s = self.spec
        ops, levels, signs = [], [], []
        for _ in range(s.num_ops):
            op = r.randrange(len(OP_NAMES))  # timm draws ops with replacement (random.choice's draw)
            if r.random() > s.prob:
                ops.append(-1), levels.append(0.0), signs.append(1.0)
                continue
            level = s.magnitude
            if s.magnitude_std > 0:
                level = r.gauss(s.magnitude, s.magnitude_std)
            level = min(_MAX_LEVEL, max(0.0, level))
            name = OP_NAMES[op]
            signed = name in _GEOMETRIC or (s.increasing and name in _ENHANCE)
            sign = -1.0 if signed and r.random() < 0.5 else 1.0
            ops.append(op), levels.append(level), signs.append(sign)
        box = self._draw_crop(h, w, r)
        flip = bool(s.random_flip and r.random() < 0.5)
        erase = self._draw_erase(r) if s.re_prob > 0 else ()
        return ClipParams(tuple(ops), tuple(levels), tuple(signs), box, flip, erase, r.getrandbits(63))

    def _draw_crop(self, h: int, w: int, r: random.Random) -> tuple[int, int, int, int]:
        s, crop = self.spec, self.spec.crop_size
        if s.scale:  # RandomResizedCrop (torchvision / PySlowFast _get_param): 10 tries, then a centre crop
            area, log_ratio = h * w, (math.log(s.aspect[0]), math.log(s.aspect[1]))
            for _ in range(10):
                target = area * r.uniform(s.scale[0], s.scale[1])
                ar = math.exp(r.uniform(*log_ratio))
                cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
                if 0 < cw <= w and 0 < ch <= h:
                    y0, x0 = r.randint(0, h - ch), r.randint(0, w - cw)
                    break
            else:
                ratio = w / h
                if ratio < min(s.aspect):
                    cw, ch = w, int(round(w / min(s.aspect)))
                elif ratio > max(s.aspect):
                    ch, cw = h, int(round(h * max(s.aspect)))
                else:
                    cw, ch = w, h
                y0, x0 = (h - ch) // 2, (w - cw) // 2
            return y0, x0, ch, cw
        # PySlowFast's older path: short side to a size in jitter_scales (or inverse-uniform), then a random crop
        lo, hi = int(s.jitter_scales[0]), int(s.jitter_scales[1])
        size = int(round(1.0 / r.uniform(1.0 / hi, 1.0 / lo))) if s.inverse_uniform else int(round(r.uniform(lo, hi)))
        size = max(size, crop)  # never smaller than the crop
        if min(h, w) == size:
            nh, nw = h, w
        else:
            nh, nw = (int(math.floor(h / w * size)), size) if w < h else (size, int(math.floor(w / h * size)))
        # offsets in [0, size - crop - 1]: PySlowFast's np.random.randint(0, H - crop) never draws the last one
        y = r.randint(0, nh - crop - 1) if nh > crop else 0
        x = r.randint(0, nw - crop - 1) if nw > crop else 0
        return y, x, nh, nw

    def _draw_erase(self, r: random.Random) -> tuple[tuple[int, int, int, int], ...]:
        """PySlowFast/timm random erasing (cube): boxes on the crop, each tried up to re_attempts times."""
        s = self.spec
        if r.random() > s.re_prob:
            return ()
        h = w = s.crop_size
        count = 1 if s.re_count <= 1 else r.randint(1, s.re_count)
        log_aspect = (math.log(s.re_min_aspect), math.log(1 / s.re_min_aspect))
        boxes = []
        for _ in range(count):
            for _ in range(s.re_attempts):
                area = r.uniform(s.re_min_area, s.re_max_area) * h * w / count
                aspect = math.exp(r.uniform(*log_aspect))
                bh, bw = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if bw < w and bh < h:
                    boxes.append((r.randint(0, h - bh), r.randint(0, w - bw), bh, bw))
                    break
        return tuple(boxes)

    def apply(self, frames: torch.Tensor, params: Sequence[ClipParams]) -> torch.Tensor:
        """The device half on this process's CPU: prepared uint8 [T,H,W,3] -> [len(params),3,T,crop,crop]."""
        if self._applier is None:
            self._applier = BatchAugment(self.spec)
        h, w = frames.shape[1:3]
        return self._applier(frames.unsqueeze(0), torch.tensor([[h, w]]), torch.zeros(len(params), dtype=torch.long),
                             list(params))


# ---------------------------------------------------------------- device side: samplers


def rotate_coeffs(degrees: float, h: int, w: int) -> tuple[float, ...]:
    """PIL's Image.rotate(degrees) (counter-clockwise about the centre) as AFFINE coefficients."""
    rad = -math.radians(degrees % 360.0)
    a, b = round(math.cos(rad), 15), round(math.sin(rad), 15)
    d, e = round(-math.sin(rad), 15), round(math.cos(rad), 15)
    cx, cy = w / 2.0, h / 2.0
    return a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy


def _cubic_weights(d: torch.Tensor, a: float) -> list[torch.Tensor]:
    """Cubic convolution weights of the taps at -1, 0, 1, 2 for fraction d in [0, 1)."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(1 + d), near(d), near(1 - d), far(2 - d)]


def affine_sample(x: torch.Tensor, coeffs: torch.Tensor, sizes: torch.Tensor, interpolation: str,
                  fill: float, along: Optional[str] = None) -> torch.Tensor:
    """PIL's Image.transform(AFFINE, coeffs, resample, fillcolor) per clip, batched: x float [N,T,C,H,W] holding
    uint8 values (zero-padded; clip n's frames are sizes[n] = (h, w) at the top left), coeffs float64 [N,6] on x's
    device. Output pixel centre (u+0.5, v+0.5) samples the input at (a u + b v + c, d u + e v + f); a point outside
    the clip's frame gets `fill`, a neighbour outside it is clamped to its edge (PIL's XCLIP/YCLIP); the value is
    truncated to an integer as PIL stores it. Returns float [N,T,C,H,W] of integers. `along` "x": every output
    row samples a source row at its centre (ShearX, TranslateX: coefficients (., ., ., 0, 1, 0)), so only that
    row's taps have weight (exactly 1); "y" likewise for columns: 4 gathers instead of 16, the same result."""
    n, t, c, H, W = x.shape
    dev = x.device
    co = coeffs.to(device=dev, dtype=torch.float64).view(n, 6, 1, 1).unbind(1)
    us = (torch.arange(W, device=dev, dtype=torch.float64) + 0.5).view(1, 1, W)
    vs = (torch.arange(H, device=dev, dtype=torch.float64) + 0.5).view(1, H, 1)
    xin, yin = co[0] * us + co[1] * vs + co[2], co[3] * us + co[4] * vs + co[5]  # [N,H,W]
    hs = sizes[:, 0].to(dev, torch.float64).view(n, 1, 1)
    ws = sizes[:, 1].to(dev, torch.float64).view(n, 1, 1)
    outside = (xin < 0) | (xin >= ws) | (yin < 0) | (yin >= hs)
    flat = x.reshape(n, t * c, H * W)

    def gather(iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
        idx = (iy.clamp(min=0).minimum(hs - 1) * W + ix.clamp(min=0).minimum(ws - 1)).long().view(n, 1, H * W)
        return flat.gather(2, idx.expand(n, t * c, H * W))

    if interpolation == "nearest":
        out = gather(torch.floor(yin), torch.floor(xin))
    else:
        xr, yr = xin - 0.5, yin - 0.5
        x0, y0 = torch.floor(xr), torch.floor(yr)
        dx, dy = (xr - x0).float(), (yr - y0).float()
        if interpolation == "bilinear":
            offs, wx, wy = (0, 1), [1 - dx, dx], [1 - dy, dy]
        elif interpolation == "bicubic":
            offs, wx, wy = (-1, 0, 1, 2), _cubic_weights(dx, _PIL_CUBIC_A), _cubic_weights(dy, _PIL_CUBIC_A)
        else:
            raise ValueError(f"interpolation: expected nearest, bilinear or bicubic, got {interpolation!r}")
        out = None
        for j, oy in enumerate(offs):  # as PIL: along x on each source row, then along y
            if along == "x" and oy != 0:
                continue  # weight exactly 0 (the row tap at the centre has weight 1)
            row = None
            for i, ox in enumerate(offs):
                if along == "y" and ox != 0:
                    continue
                term = gather(y0 + oy, x0 + ox)
                term = term if along == "y" else term * wx[i].view(n, 1, H * W)
                row = term if row is None else row + term
            term = row if along == "x" else row * wy[j].view(n, 1, H * W)
            out = term if out is None else out + term
        # PIL truncates; the float32 sums of weights that add up to 1 can land a hair below an integer
        out = torch.trunc(out.add_(1e-3).clamp_(0, 255))
    out = out.view(n, t, c, H, W)
    return torch.where(outside.view(n, 1, 1, H, W), torch.full((), float(fill), device=dev), out)


def crop_resize(x: torch.Tensor, box: Sequence[int], size: int, jitter: bool) -> torch.Tensor:
    """One clip's crop + resize as PySlowFast's, with F.interpolate(bilinear, align_corners=False, no antialias):
    x [T,C,h,w] (the clip's frame, any dtype) -> float32 [T,C,size,size]. RandomResizedCrop: the box (top, left,
    height, width) resized; `jitter`: the frame resized to (height, width), then the size×size crop at (top,
    left). Per clip (not one gather for the batch): the resize kernel on the box is ~8× cheaper on a CPU."""
    top, left, bh, bw = (int(v) for v in box)
    if not jitter:
        return F.interpolate(x[..., top : top + bh, left : left + bw].float(), size=(size, size), mode="bilinear",
                             align_corners=False)
    if (bh, bw) != tuple(x.shape[-2:]):
        x = F.interpolate(x.float(), size=(bh, bw), mode="bilinear", align_corners=False)
    return x[..., top : top + size, left : left + size].float()


# ---------------------------------------------------------------- device side: RandAugment ops


def _grey(x: torch.Tensor, bgr: bool) -> torch.Tensor:
    """PIL's RGB -> L (integer weights, rounded) of float [N,T,3,H,W] -> int32 [N,T,1,H,W]; `bgr`: the channels
    are in BGR order but PIL is told RGB (PySlowFast's SSv2), so its weights land on the swapped channels."""
    wr, wg, wb = _GREY_RGB
    w = (wb, wg, wr) if bgr else (wr, wg, wb)
    v = x.to(torch.int32)
    return (v[:, :, 0:1] * w[0] + v[:, :, 1:2] * w[1] + v[:, :, 2:3] * w[2] + 0x8000) >> 16


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Image.blend(degenerate, image, factor) in float32, truncated and clipped (ImageEnhance)."""
    f = factor.to(torch.float32).view(-1, 1, 1, 1, 1)
    return torch.trunc((degenerate + f * (x - degenerate)).clamp_(0, 255))


def _apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """x float [N,T,C,H,W] of uint8 values, lut [N,T|1,C|1,256] -> lut[x] per (clip, frame, channel)."""
    n, t, c, H, W = x.shape
    lut = lut.to(x.dtype).expand(n, t, c, 256).reshape(n * t * c, 256)
    idx = x.reshape(n * t * c, H * W).long().clamp_(0, 255)
    return lut.gather(1, idx).view(n, t, c, H, W)


def _valid_mask(sizes: torch.Tensor, H: int, W: int, device: torch.device) -> torch.Tensor:
    """bool [N,H,W]: inside each clip's frame."""
    hs, ws = sizes[:, 0].to(device).view(-1, 1, 1), sizes[:, 1].to(device).view(-1, 1, 1)
    return (torch.arange(H, device=device).view(1, H, 1) < hs) & (torch.arange(W, device=device).view(1, 1, W) < ws)


def _histogram(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """int64 [N,T,C,256] histograms of each frame's channels over the valid pixels."""
    n, t, c, H, W = x.shape
    idx = x.long().clamp(0, 255).view(n, t * c, H * W)
    idx = torch.where(valid.view(n, 1, H * W), idx, torch.full((), 256, device=x.device))  # padding: bin 256
    hist = torch.zeros(n, t * c, 257, dtype=torch.int64, device=x.device)
    hist.scatter_add_(2, idx, torch.ones((), dtype=torch.int64, device=x.device).expand_as(idx))
    return hist[..., :256].view(n, t, c, 256)


def _autocontrast_lut(hist: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.autocontrast (cutoff 0): per channel lo..hi stretched to 0..255, int() of the double."""
    levels = torch.arange(256, device=hist.device, dtype=torch.float64)
    present = hist > 0
    lo = torch.where(present, levels, torch.full((), 256.0, device=hist.device, dtype=torch.float64)).amin(-1, True)
    hi = torch.where(present, levels, torch.full((), -1.0, device=hist.device, dtype=torch.float64)).amax(-1, True)
    span = (hi - lo).clamp(min=1)
    scale = torch.full_like(span, 255.0) / span  # a true division: `255.0 / span` is 255 * (1 / span) in torch
    lut = torch.trunc(levels * scale + -lo * scale).clamp_(0, 255)
    return torch.where(hi <= lo, levels, lut)


def _equalize_lut(hist: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.equalize: step = (pixels - count of the last level) // 255, lut[i] = (step // 2 + pixels
    below i) // step; identity when step is 0."""
    levels = torch.arange(256, device=hist.device)
    last = torch.where(hist > 0, levels, torch.full((), -1, device=hist.device)).amax(-1, True).clamp(min=0)
    step = (hist.sum(-1, True) - hist.gather(-1, last)) // 255
    below = hist.cumsum(-1) - hist
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp_(max=255)
    return torch.where(step == 0, levels, lut).double()


def _smooth(x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """PIL's ImageFilter.SMOOTH ([[1,1,1],[1,5,1],[1,1,1]] / 13, rounded), edge rows and columns of each clip's
    frame left as they are. As (3×3 box sum + 4 × centre) / 13 on integers: a sum / 13 is never k + 0.5, so the
    rounding is PIL's whatever the float order."""
    n, t, c, H, W = x.shape
    sm = x.clone()
    if H >= 3 and W >= 3:
        cols = x[..., :-2] + x[..., 1:-1] + x[..., 2:]  # [.., H, W-2]
        box = cols[..., :-2, :] + cols[..., 1:-1, :] + cols[..., 2:, :]  # [.., H-2, W-2]
        sm[..., 1:-1, 1:-1] = torch.round((box + 4 * x[..., 1:-1, 1:-1]) / 13.0)
    hs, ws = sizes[:, 0].to(x.device).view(n, 1, 1), sizes[:, 1].to(x.device).view(n, 1, 1)
    ys, xs = torch.arange(H, device=x.device).view(1, H, 1), torch.arange(W, device=x.device).view(1, 1, W)
    interior = (ys >= 1) & (ys < hs - 1) & (xs >= 1) & (xs < ws - 1)
    return torch.where(interior.view(n, 1, 1, H, W), sm, x)


class BatchAugment:
    """The device half: `(frames, sizes, source, params) -> video` (see module doc); draws nothing from the global
    RNGs (erasing noise comes from per-clip generators seeded by ClipParams.noise_seed)."""

    def __init__(self, spec: AugSpec) -> None:
        self.spec = spec

    def __call__(self, frames: torch.Tensor, sizes: torch.Tensor, source: torch.Tensor,
                 params: Sequence[ClipParams]) -> torch.Tensor:
        """frames uint8 [U,T,H,W,3] (zero-padded; video u is sizes[u] = (h, w) at the top left), source long [B]
        (clip b is from video source[b]), params: B ClipParams -> float32 [B,3,T,crop,crop] on frames' device."""
        s, dev = self.spec, frames.device
        b = len(params)
        src = source.to(dev)
        sizes_b = sizes.cpu()[source.cpu()]  # [B,2] host copy: the ops' coefficients are built on the host
        x = frames.index_select(0, src).permute(0, 1, 4, 2, 3)  # [B,T,3,H,W] uint8, channels-last memory
        if s.num_ops:
            x = self._rand_augment(x.float(), sizes_b, params)
        # without RandAugment the crop reads the uint8 frames in place: only its box becomes float
        out = torch.empty((b, x.shape[1], 3, s.crop_size, s.crop_size), device=dev)
        for i, p in enumerate(params):
            h, w = int(sizes_b[i, 0]), int(sizes_b[i, 1])
            out[i] = crop_resize(x[i, :, :, :h, :w], p.box, s.crop_size, jitter=not s.scale)
        x = out
        flips = [i for i, p in enumerate(params) if p.flip]
        if flips:
            fi = torch.tensor(flips, device=dev)
            x.index_copy_(0, fi, x.index_select(0, fi).flip(-1))
        mean = torch.tensor(s.mean, device=dev).view(1, 1, 3, 1, 1) * 255.0
        std = torch.tensor(s.std, device=dev).view(1, 1, 3, 1, 1) * 255.0
        x = x.sub_(mean).div_(std)
        for i, p in enumerate(params):  # few clips erase (re_prob 0.25): a loop over them, not a mask
            if not p.erase:
                continue
            g = torch.Generator(device=dev)
            g.manual_seed(p.noise_seed)
            for top, left, bh, bw in p.erase:
                x[i, :, :, top : top + bh, left : left + bw] = torch.randn(
                    (x.shape[1], 3, bh, bw), generator=g, device=dev)
        return x.permute(0, 2, 1, 3, 4).contiguous()  # [B,3,T,crop,crop]

    def _rand_augment(self, x: torch.Tensor, sizes: torch.Tensor, params: Sequence[ClipParams]) -> torch.Tensor:
        """Each op slot in turn; within a slot each op once, on the clips that drew it."""
        dev = x.device
        for slot in range(self.spec.num_ops):
            groups: dict[int, list[int]] = {}
            for i, p in enumerate(params):
                if p.ops[slot] >= 0:
                    groups.setdefault(p.ops[slot], []).append(i)
            for op, clips in sorted(groups.items()):
                idx = torch.tensor(clips, device=dev)
                levels = [params[i].levels[slot] for i in clips]
                signs = [params[i].signs[slot] for i in clips]
                sub = self._op(OP_NAMES[op], x.index_select(0, idx), sizes[clips], levels, signs)
                x.index_copy_(0, idx, sub)
        return x

    def _op(self, name: str, x: torch.Tensor, sizes: torch.Tensor, levels: list[float],
            signs: list[float]) -> torch.Tensor:
        """One RandAugment op on clips x [k,T,3,H,W] with their frame sizes [k,2], magnitudes and signs (timm's
        increasing level mappings)."""
        s, dev = self.spec, x.device
        k, _, _, H, W = x.shape
        m = [lv / _MAX_LEVEL for lv in levels]

        def lut_of(fn) -> torch.Tensor:  # per-clip LUT [k,1,1,256] from fn(clip, level value) -> 256 ints
            lv = torch.arange(256, dtype=torch.float64)
            return torch.stack([fn(j, lv) for j in range(k)]).view(k, 1, 1, 256).to(dev, non_blocking=True)

        if name in _GEOMETRIC:
            coeffs = []
            for j in range(k):
                h, w = int(sizes[j, 0]), int(sizes[j, 1])
                v = signs[j] * m[j]
                if name == "Rotate":
                    coeffs.append(rotate_coeffs(v * 30.0, h, w))
                elif name == "ShearX":
                    coeffs.append((1, v * 0.3, 0, 0, 1, 0))
                elif name == "ShearY":
                    coeffs.append((1, 0, 0, v * 0.3, 1, 0))
                elif name == "TranslateXRel":
                    coeffs.append((1, 0, v * 0.45 * w, 0, 1, 0))
                else:
                    coeffs.append((1, 0, 0, 0, 1, v * 0.45 * h))
            co = torch.tensor(coeffs, dtype=torch.float64)
            along = "x" if name in ("ShearX", "TranslateXRel") else "y" if name in ("ShearY", "TranslateYRel") else None
            return affine_sample(x, co.to(dev, non_blocking=True), sizes, s.interpolation, s.fill, along)
        if name in ("AutoContrast", "Equalize"):
            hist = _histogram(x, _valid_mask(sizes, H, W, dev))
            return _apply_lut(x, _autocontrast_lut(hist) if name == "AutoContrast" else _equalize_lut(hist))
        if name == "Invert":
            return 255.0 - x
        if name == "Posterize":
            bits = [max(0, min(8, 4 - int(v * 4) if s.increasing else int(v * 4))) for v in m]
            return _apply_lut(x, lut_of(lambda j, lv: torch.floor(lv / 2 ** (8 - bits[j])) * 2 ** (8 - bits[j])))
        if name == "Solarize":
            thr = [256 - int(v * 256) if s.increasing else int(v * 256) for v in m]
            return _apply_lut(x, lut_of(lambda j, lv: torch.where(lv < thr[j], lv, 255 - lv)))
        if name == "SolarizeAdd":
            add = [int(v * 110) for v in m]
            return _apply_lut(x, lut_of(lambda j, lv: torch.where(lv < 128, (lv + add[j]).clamp(max=255), lv)))
        # the ImageEnhance ops: blend with a degenerate image
        if s.increasing:
            factor = [1.0 + sg * v * 0.9 for sg, v in zip(signs, m)]
        else:
            factor = [v * 1.8 + 0.1 for v in m]
        f = torch.tensor(factor, dtype=torch.float32).to(dev, non_blocking=True)
        if name == "Brightness":
            return _blend(torch.zeros((), device=dev), x, f)
        if name == "Color":
            return _blend(_grey(x, s.bgr_grey).to(x.dtype), x, f)  # L broadcast to the 3 channels
        if name == "Contrast":
            valid = _valid_mask(sizes, H, W, dev).view(k, 1, 1, H, W)
            grey = _grey(x, s.bgr_grey).to(torch.int64) * valid
            count = (sizes[:, 0] * sizes[:, 1]).to(dev).view(k, 1, 1, 1, 1)
            mean = torch.floor(grey.sum((-1, -2), keepdim=True).double() / count + 0.5)  # int(mean + 0.5)
            return _blend(mean.to(x.dtype), x, f)
        if name == "Sharpness":
            return _blend(_smooth(x, sizes), x, f)
        raise ValueError(f"unknown RandAugment op {name!r}")


# ---------------------------------------------------------------- building


def build_aug_spec(data, aug, random_flip: Optional[bool] = None, decode_short_side: Optional[int] = None,
                   bgr_grey: bool = False) -> AugSpec:
    """The AugSpec of the data.* and aug.* settings (arguments as transforms.build_train_transform; `bgr_grey`:
    SSv2's BGR frames)."""
    check_interpolation(aug.interpolation)  # also when unused: a value that does nothing must not pass silently
    ra: dict = {}
    re_prob = 0.0
    if aug.enable:
        if aug.aa_type:
            p = parse_rand_augment(aug.aa_type)
            ra = dict(num_ops=p["num_ops"], magnitude=p["magnitude"], magnitude_std=p["magnitude_std"],
                      increasing=p["increasing"])
        if aug.re_mode != "pixel":
            raise ConfigError(f"aug.re_mode: only 'pixel' is supported, got {aug.re_mode!r}")
        re_prob = aug.re_prob
    return AugSpec(
        crop_size=int(data.train_crop_size),
        mean=tuple(float(v) for v in data.mean),
        std=tuple(float(v) for v in data.std),
        scale=tuple(float(v) for v in data.train_jitter_scales_relative),
        aspect=tuple(float(v) for v in data.train_jitter_aspect_relative),
        jitter_scales=(int(data.train_jitter_scales[0]), int(data.train_jitter_scales[1])),
        inverse_uniform=bool(data.inv_uniform_sample),
        random_flip=bool(data.random_flip if random_flip is None else random_flip),
        interpolation=aug.interpolation,
        bgr_grey=bgr_grey,
        re_prob=float(re_prob),
        re_count=int(aug.re_count),
        decode_short_side=decode_short_side,
        **ra,
    )
