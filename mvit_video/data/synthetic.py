"""The embedded synthetic video set: real mp4 files whose classes can only be told apart by motion.

Each video shows a shape (square or disc, random colour, size, position and speed) over a random smooth texture;
its class is how the shape moves: right, left, down, up, growing or shrinking. A single frame cannot tell the
class (every position, size and colour occurs in every class), so a model that learns the set uses motion.
Generated once into `<root>/<key>/` (key = hash of the settings, seed included) in the Kinetics list format:
`train.csv`, `val.csv`, `test.csv` (`relative/path.mp4 label`) and `classes.txt`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mvit_video.data.encode import write_video
from mvit_video.utils.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["CLASSES", "DEFAULTS", "SET_SIZES", "default_root", "dataset_key", "render_video",
           "ensure_synthetic_dataset"]

CLASSES = ["moving right", "moving left", "moving down", "moving up", "growing", "shrinking"]

# How the videos are rendered, when a caller does not say (the run passes every data.synthetic setting): a copy
# of config.yaml's data.synthetic for Python callers, kept equal by tests/test_checkpoint_data.py.
DEFAULTS: dict[str, Any] = {
    "num_classes": 6,
    "num_frames": 30,
    "height": 64,
    "width": 80,
    "fps": 30.0,
    "seed": 0,
}
# Videos per class and split: always given by the caller; the run's values live in config.yaml (data.synthetic).
SET_SIZES = ("train_per_class", "val_per_class", "test_per_class")
_VERSION = 5  # bump when the rendering or encoding changes so old caches are not reused (5: lossless)


def default_root() -> Path:
    """~/.cache/mvit_video/synthetic (XDG_CACHE_HOME respected)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mvit_video" / "synthetic"


def _settings(settings: dict[str, Any]) -> dict[str, Any]:
    known = set(DEFAULTS) | set(SET_SIZES)
    unknown = set(settings) - known
    if unknown:
        raise ConfigError(f"data.synthetic: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
    s = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    missing = [k for k in SET_SIZES if k not in s]
    if missing:
        raise ConfigError(f"data.synthetic: {', '.join(missing)} not set (videos per class of each split)")
    if not 2 <= int(s["num_classes"]) <= len(CLASSES):
        raise ConfigError(f"data.synthetic.num_classes: must be in [2, {len(CLASSES)}], got {s['num_classes']}")
    if int(s["num_frames"]) < 2:
        raise ConfigError(f"data.synthetic.num_frames: must be >= 2, got {s['num_frames']}")
    if int(s["height"]) % 2 or int(s["width"]) % 2 or min(int(s["height"]), int(s["width"])) < 32:
        raise ConfigError("data.synthetic.height/width: must be even (h264 yuv420p) and >= 32")
    return s


def dataset_key(settings: dict[str, Any]) -> str:
    """Directory name for these settings: a short hash of the (completed) settings and the generator version."""
    s = _settings(settings)
    blob = json.dumps({"version": _VERSION, **s}, sort_keys=True)
    return f"v{_VERSION}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random smooth coloured texture (low-frequency noise plus fine grain), uint8 [H, W, 3]."""
    # mid-contrast: textured enough that a shape is not a trivial blob, plain enough that it stands out
    coarse = rng.uniform(60, 195, size=(h // 8 + 2, w // 8 + 2, 3))
    # bilinear upsampling of the coarse grid: smooth blobs the shape must be told apart from
    ys = np.linspace(0, coarse.shape[0] - 1.001, h)
    xs = np.linspace(0, coarse.shape[1] - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    c = coarse
    img = (
        c[y0][:, x0] * (1 - fy) * (1 - fx)
        + c[y0 + 1][:, x0] * fy * (1 - fx)
        + c[y0][:, x0 + 1] * (1 - fy) * fx
        + c[y0 + 1][:, x0 + 1] * fy * fx
    )
    img += rng.normal(0, 5, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_video(cls: int, rng: np.random.Generator, num_frames: int, height: int, width: int) -> np.ndarray:
    """Frames uint8 [T, H, W, 3] of one video of class `cls` (index into CLASSES); all randomness from `rng`."""
    bg = _texture(rng, height, width)
    color = rng.integers(0, 256, size=3)
    color[rng.integers(0, 3)] = rng.choice([20, 235])  # keep the shape saturated enough to stand out
    disc = bool(rng.integers(0, 2))
    t = np.arange(num_frames, dtype=np.float64)
    unit = min(height, width) / 64.0  # shape sizes below are for 64 px frames
    if cls < 4:  # translation: constant size, speed in px/frame along one axis
        size = np.full(num_frames, rng.uniform(10, 16) * unit)
        along = width if cls < 2 else height
        across = height if cls < 2 else width
        fastest = max(0.1, (along - size[0] - 4) / num_frames)  # the whole path stays inside the frame
        # 0.8-1.6 px/frame: a training clip (8 frames every 3) sees the shape travel 17-34 px of a 64 px frame,
        # a motion the tiny network finds within a few epochs (0.5-1.2 left it at chance for longer)
        speed = rng.uniform(min(0.8, fastest), min(1.6, fastest))
        travel = speed * (num_frames - 1)
        start = rng.uniform(2 + size[0] / 2, along - 2 - size[0] / 2 - travel)
        pos = start + speed * t
        if cls in (1, 3):  # left / up: same path, reversed in time
            pos = pos[::-1]
        other = np.full(num_frames, rng.uniform(2 + size[0] / 2, across - 2 - size[0] / 2))
        cx, cy = (pos, other) if cls < 2 else (other, pos)
    else:  # growing / shrinking around a fixed centre
        small, big = rng.uniform(6, 12) * unit, rng.uniform(24, 34) * unit
        size = small + (big - small) * t / (num_frames - 1)
        if cls == 5:
            size = size[::-1]
        cx = np.full(num_frames, rng.uniform(big / 2 + 2, width - big / 2 - 2))
        cy = np.full(num_frames, rng.uniform(big / 2 + 2, height - big / 2 - 2))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = np.repeat(bg[None], num_frames, axis=0)
    for i in range(num_frames):
        r = size[i] / 2
        if disc:
            mask = (yy - cy[i]) ** 2 + (xx - cx[i]) ** 2 <= r * r
        else:
            mask = (np.abs(yy - cy[i]) <= r) & (np.abs(xx - cx[i]) <= r)
        frames[i][mask] = color
    return frames


def _generate(out: Path, s: dict[str, Any]) -> None:
    """Write all videos, the three lists and classes.txt into `out` (an empty directory)."""
    n_cls = int(s["num_classes"])
    root_rng = np.random.default_rng(int(s["seed"]))
    counts = {"train": int(s["train_per_class"]), "val": int(s["val_per_class"]), "test": int(s["test_per_class"])}
    for split, per_class in counts.items():
        (out / split).mkdir()
        # class order interleaved and shuffled so list files are not sorted by label
        labels = np.repeat(np.arange(n_cls), per_class)
        root_rng.shuffle(labels)
        lines = []
        for i, label in enumerate(labels.tolist()):
            rng = np.random.default_rng(root_rng.integers(0, 2**63))
            frames = render_video(label, rng, int(s["num_frames"]), int(s["height"]), int(s["width"]))
            rel = f"{split}/{i:05d}.mp4"
            # lossless (crf 0): x264's lossy rate control gave different bytes for ~1% of the videos from run to
            # run on a busy machine (even on one thread), so two generations were two datasets; lossless coding
            # decodes to the same frames every time (measured: 1,800 encodings in 3 concurrent processes, 0
            # differences) at 11.5 KB per video instead of 5
            write_video(out / rel, frames, fps=float(s["fps"]), crf=0)
            lines.append(f"{rel} {label}")
        (out / f"{split}.csv").write_text("\n".join(lines) + "\n")
    (out / "classes.txt").write_text("\n".join(CLASSES[:n_cls]) + "\n")
    (out / "settings.json").write_text(json.dumps(s, sort_keys=True, indent=1) + "\n")


_CACHE_ENTRY = re.compile(r"^(v\d+-[0-9a-f]{12}|\.tmp-.*)$")  # what the cache root holds: one folder per setting
_LIST_FILES = ("train.csv", "val.csv", "test.csv", "classes.txt", "labels.json")


def check_synthetic_root(root: str | os.PathLike) -> None:
    """Refuse a data.path_to_data_dir that is not a synthetic cache (a user's folder of lists or videos): the
    synthetic set would be generated into it. A folder of lists gets a hint naming data.dataset."""
    root = Path(root)
    if not root.is_dir():
        return
    lists = [name for name in _LIST_FILES if (root / name).is_file()]
    if lists:
        n = _count_classes(root)
        raise ConfigError(
            f"data.path_to_data_dir={root} holds {', '.join(lists)} but data.dataset is 'synthetic' (the default), "
            f"which generates its own videos there: to train on these lists add data.dataset=kinetics"
            + (f" model.num_classes={n}" if n else "")
        )
    others = sorted(p.name for p in root.iterdir() if not _CACHE_ENTRY.match(p.name))
    if others:
        raise ConfigError(
            f"data.path_to_data_dir={root} is not a synthetic-set cache (it holds {', '.join(others[:3])}"
            f"{' ...' if len(others) > 3 else ''}); data.dataset=synthetic only writes into an empty folder or its "
            f"own cache: leave data.path_to_data_dir empty, or set data.dataset=kinetics for a folder of lists"
        )


def _count_classes(root: Path) -> int | None:
    """Classes of a folder of lists: lines of classes.txt, else the largest train.csv label + 1 (None if unknown)."""
    try:
        if (root / "classes.txt").is_file():
            return sum(1 for ln in (root / "classes.txt").read_text(encoding="utf-8-sig").splitlines() if ln.strip())
        labels = [int(ln.rsplit(None, 1)[-1]) for ln in (root / "train.csv").read_text(encoding="utf-8-sig")
                  .splitlines() if ln.strip()]
        return max(labels) + 1 if labels else None
    except (OSError, ValueError, IndexError):  # only a hint: the list itself is checked when it is read
        return None


def ensure_synthetic_dataset(root: Optional[str | os.PathLike] = None, **settings: Any) -> Path:
    """Generate (once) the synthetic set for `settings` under `root` and return its directory.

    Generation writes into a temporary sibling directory and renames it into place, so an interrupted run never
    leaves a half-written set; concurrent callers (several ranks) both generate and the first rename wins.
    """
    s = _settings(settings)
    if root:
        check_synthetic_root(root)
    root = Path(root) if root else default_root()
    final = root / dataset_key(s)
    if (final / "classes.txt").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    t0 = time.time()
    try:
        _generate(tmp, s)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first (the target exists and is not empty)
            if not (final / "classes.txt").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("generated the synthetic video set in %s (%.1f s)", final, time.time() - t0)
    return final
