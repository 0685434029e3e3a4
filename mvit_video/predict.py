"""Use a trained model from Python: class names with probabilities, a per-window timeline, embeddings.

    from mvit_video import Predictor

    predictor = Predictor.from_checkpoint("checkpoint_epoch_00200.pyth", device="cuda")
    for name, prob in predictor.predict("clip.mp4", views="5x1", topk=5).topk:
        print(f"{name}: {prob:.3f}")
    embedding = predictor.features("clip.mp4")  # [D], the head's input averaged over the views

Views are the test views of `evaluate` (REFERENCE §4-5, §8): `data.clips.views` samples, decodes and crops them
under the checkpoint dataset's protocol (`ClipSpec.for_dataset`: Kinetics-style, or SSv2's segment sampling, 30 fps
frame grid and left/top crop), so a video scores here as it does in evaluate. Clip settings (num_frames,
sampling_rate, crop, views) come from the checkpoint's data_config unless overridden.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from mvit_video.data import clips
from mvit_video.data.base import VideoDataset
from mvit_video.data.clips import ClipSpec
from mvit_video.data.decoding import VideoReader
from mvit_video.eval.multiview import mean_view_features, mean_view_probs
from mvit_video.utils.errors import UserError

logger = logging.getLogger(__name__)

__all__ = ["Predictor", "Prediction", "WindowPrediction", "parse_views", "default_views"]


def parse_views(views: str | Sequence[int]) -> tuple[int, int]:
    """"KxS" (or (K, S)) -> (K temporal clips, S spatial crops); K >= 1, S is 1 or 3. Bad values: UserError."""
    try:
        k, s = (int(x) for x in (views.lower().split("x") if isinstance(views, str) else views))
    except (ValueError, TypeError):
        raise UserError(f"views must look like 5x1 or 1x3, got {views!r}") from None
    if k < 1 or s not in (1, 3):
        raise UserError(f"views {k}x{s}: need K >= 1 temporal clips and S = 1 or 3 crops")
    return k, s


def default_views(data_config: Mapping[str, Any]) -> tuple[int, int]:
    """The checkpoint's test views when it records them, else the paper's: 1x3 for SSv2, 5x1 otherwise."""
    if "num_ensemble_views" in data_config and "num_spatial_crops" in data_config:
        return int(data_config["num_ensemble_views"]), int(data_config["num_spatial_crops"])
    return (1, 3) if data_config.get("dataset") == "ssv2" else (5, 1)


def check_window(window: float) -> float:
    """A window length in seconds must be finite and > 0 (UserError otherwise)."""
    try:
        window = float(window)
    except (TypeError, ValueError):
        raise UserError(f"window must be a number of seconds, got {window!r}") from None
    if not (math.isfinite(window) and window > 0):
        raise UserError(f"window must be a positive, finite number of seconds, got {window}")
    return window


@dataclass
class Prediction:
    """The k most probable classes of a video: `topk` = [(name, prob)] best first; `probs` [C] all classes."""

    video: str
    topk: list[tuple[str, float]]
    class_indices: list[int]
    probs: torch.Tensor
    views: tuple[int, int]
    duration: float = 0.0
    fps: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {"video", "duration", "fps", "topk": [{"class_index", "name", "prob"}]}."""
        return {"video": self.video, "duration": round(self.duration, 3), "fps": self.fps,
                "topk": topk_dicts(self)}


@dataclass
class WindowPrediction:
    """Top-k of the window [start, end) seconds of a video (views sampled within the window only)."""

    start: float
    end: float
    topk: list[tuple[str, float]]
    class_indices: list[int]
    probs: torch.Tensor = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "topk": topk_dicts(self)}


def topk_dicts(p: Prediction | WindowPrediction) -> list[dict[str, Any]]:
    """[{"class_index", "name", "prob"}] of a prediction's top-k."""
    return [{"class_index": c, "name": n, "prob": prob} for c, (n, prob) in zip(p.class_indices, p.topk)]


class Predictor:
    """A model plus the test-time clip pipeline of its checkpoint: videos in, classes / embeddings out.

    Overrides (None = the checkpoint's data_config): `num_frames`, `sampling_rate`, `crop_size` (test crop) and
    `views` ("KxS"); `describe()` says which settings are in use and where each comes from.
    """

    def __init__(
        self,
        model: nn.Module,
        data_config: Mapping[str, Any],
        class_names: Sequence[str] | None = None,
        *,
        device: torch.device | str = "cpu",
        views: str | Sequence[int] | None = None,
        num_frames: int | None = None,
        sampling_rate: int | None = None,
        crop_size: int | None = None,
        decoder: str = "decord",
        amp_dtype: torch.dtype | str | None = None,
        max_views_per_forward: int = 16,
        source: str = "",
    ) -> None:
        missing = [k for k in ("num_frames", "sampling_rate", "target_fps", "test_crop_size", "mean", "std")
                   if k not in data_config]
        if missing:
            raise UserError(f"{source or 'data_config'}: data_config lacks {', '.join(missing)}; cannot sample views")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.data_config = dict(data_config)
        self.class_names = list(class_names) if class_names else None
        self.decoder, self.amp_dtype = decoder, amp_dtype
        self.max_views_per_forward = int(max_views_per_forward)
        self.source = source
        dc = self.data_config
        given = {"num_frames": num_frames, "sampling_rate": sampling_rate, "crop_size": crop_size,
                 "views": None if views is None else parse_views(views)}
        checkpoint = {"num_frames": int(dc["num_frames"]), "sampling_rate": int(dc["sampling_rate"]),
                      "crop_size": int(dc["test_crop_size"]), "views": default_views(dc)}
        self.settings = {k: (given[k] if given[k] is not None else checkpoint[k]) for k in checkpoint}
        self.overridden = sorted(k for k, v in given.items() if v is not None and v != checkpoint[k])
        for key in ("num_frames", "sampling_rate", "crop_size"):
            if int(self.settings[key]) < 1:
                raise UserError(f"{key} must be >= 1, got {self.settings[key]}")
        logger.info("%s", self.describe())

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str | None = None, *,
                        use_ema: bool = False, **overrides: Any) -> "Predictor":
        """Load one of our checkpoints (device default: cuda when available); overrides as in `Predictor`."""
        from mvit_video.checkpoint import load_checkpoint_info, load_model

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {device}: no CUDA device is available")
        info = load_checkpoint_info(path)
        if not info.get("data_config"):
            raise UserError(f"{path}: the checkpoint has no data_config; cannot sample views")
        model = load_model(path, use_ema=use_ema)
        return cls(model, info["data_config"], info.get("class_names"), device=device, source=str(path),
                   **overrides)

    # ------------------------------------------------------------------ settings

    def describe(self) -> str:
        """One line: the clip settings in use, and which ones override the checkpoint's data_config."""
        s = self.settings
        k, v = s["views"]
        where = f"overridden: {', '.join(self.overridden)}" if self.overridden else "all from the checkpoint"
        if "views" not in self.overridden and "num_ensemble_views" not in self.data_config:
            # the checkpoint does not record test views: the paper's for its dataset
            where += "; views: not recorded in the checkpoint, the paper's default (SSv2 1x3, else 5x1)"
        return (f"clips of {s['num_frames']} frames every {s['sampling_rate']} (at {self.data_config['target_fps']} "
                f"fps), crop {s['crop_size']}, {k}x{v} views ({where})")

    def spec(self, views: str | Sequence[int] | None = None) -> ClipSpec:
        """The test ClipSpec of these settings (views: "KxS" for this call, default the predictor's)."""
        k, s = parse_views(views) if views is not None else self.settings["views"]
        dc, crop = self.data_config, int(self.settings["crop_size"])
        dataset = str(dc.get("dataset") or "kinetics")
        spec = ClipSpec.for_dataset(
            dataset,
            train_short_side=int((dc.get("train_jitter_scales") or [crop])[0]),
            # SSv2: PySlowFast's 30 fps frame grid (conf/data/ssv2.yaml) when the checkpoint does not record it
            frame_grid_fps=float(dc.get("frame_grid_fps", 30.0 if dataset == "ssv2" else 0.0)),
            num_frames=int(self.settings["num_frames"]),
            sampling_rate=int(self.settings["sampling_rate"]),
            target_fps=float(dc["target_fps"]),
            use_offset_sampling=bool(dc.get("use_offset_sampling", True)),
            num_ensemble_views=k,
            num_spatial_crops=s,
            test_crop_size=crop,
            mean=tuple(dc["mean"]),
            std=tuple(dc["std"]),
            decoder=self.decoder,
        )
        if spec.test_short_side < crop:
            raise UserError(f"crop {crop} is larger than the 1-crop short side {spec.test_short_side} "
                            f"(train_jitter_scales[0] of the checkpoint); use 3 crops or a crop <= "
                            f"{spec.test_short_side}")
        return spec

    # ------------------------------------------------------------------ views

    def dataset(self, paths: Sequence[str] = (), full_paths: Sequence[str] | None = None,
                labels: Sequence[int] | None = None, views: str | Sequence[int] | None = None) -> VideoDataset:
        """A test-split dataset over `paths` with these clip settings (labels default -1): its items are the
        views `views()` gives, batched through the test loader by `mvit_video.extract`."""
        full = list(full_paths) if full_paths is not None else list(paths)
        labels = list(labels) if labels is not None else [-1] * len(full)
        return VideoDataset(list(paths), full, labels, "test", self.spec(views))

    def views(self, reader: VideoReader, first: int = 0, last: int | None = None,
              views: str | Sequence[int] | None = None) -> torch.Tensor:
        """The K*S normalised views [K*S,3,T,crop,crop] of frames [first, last) of an open video, one decode."""
        return clips.views(reader, self.spec(views), first, last)

    @staticmethod
    def _open(spec: ClipSpec, video: str | os.PathLike) -> VideoReader:
        reader = clips.open_reader(video, spec)  # the dataset's reader (SSv2: frame folders, the 30 fps grid)
        if not reader.fps > 0:
            reader.close()
            raise UserError(f"{video}: unknown frame rate; cannot place the views in time")
        return reader

    def _probs(self, views: torch.Tensor) -> torch.Tensor:
        return mean_view_probs(self.model, [views], self.device, self.amp_dtype, self.max_views_per_forward)[0]

    def _topk(self, probs: torch.Tensor, k: int) -> tuple[list[tuple[str, float]], list[int]]:
        if k < 1:
            raise UserError(f"topk must be >= 1, got {k}")
        values, indices = probs.topk(min(k, probs.numel()))
        names = self.class_names
        top = [(names[i] if names and i < len(names) else str(i), float(p))
               for p, i in zip(values.tolist(), indices.tolist())]
        return top, indices.tolist()

    # ------------------------------------------------------------------ public API

    def predict(self, video: str | os.PathLike, views: str | Sequence[int] | None = None, topk: int = 5) -> Prediction:
        """Top-k classes of the whole video: mean softmax over the K x S test views (as evaluate scores it)."""
        spec = self.spec(views)
        with self._open(spec, video) as reader:
            probs = self._probs(clips.views(reader, spec))
            duration, fps = reader.duration, reader.fps
        top, idx = self._topk(probs, topk)
        return Prediction(str(video), top, idx, probs, (spec.num_ensemble_views, spec.num_spatial_crops), duration,
                          fps)

    def timeline(self, video: str | os.PathLike, window: float = 2.0, views: str | Sequence[int] | None = None,
                 topk: int = 5) -> list[WindowPrediction]:
        """Top-k of consecutive non-overlapping windows of `window` seconds, each with its own K x S views."""
        window = check_window(window)
        spec = self.spec(views)
        out = []
        with self._open(spec, video) as reader:
            step = max(1, round(window * reader.fps))
            for a in range(0, reader.num_frames, step):  # one window at a time: memory bounded by one window
                b = min(a + step, reader.num_frames)
                probs = self._probs(clips.views(reader, spec, a, b))
                top, idx = self._topk(probs, topk)
                out.append(WindowPrediction(a / reader.fps, b / reader.fps, top, idx, probs))
        return out

    def features(self, video: str | os.PathLike, views: str | Sequence[int] | None = None) -> torch.Tensor:
        """The pooled embedding [D] (the head's input, model.forward_features) averaged over the views."""
        spec = self.spec(views)
        with self._open(spec, video) as reader:
            views_tensor = clips.views(reader, spec)
        return mean_view_features(self.model, [views_tensor], self.device, self.amp_dtype,
                                  self.max_views_per_forward)[0]
