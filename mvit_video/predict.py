"""Use a trained model from Python: class names with probabilities, a per-window timeline, embeddings.

    from mvit_video import Predictor

    predictor = Predictor.from_checkpoint("checkpoint_epoch_00200.pyth", device="cuda")
    for name, prob in predictor.predict("clip.mp4", views="5x1", topk=5).topk:
        print(f"{name}: {prob:.3f}")
    embedding = predictor.features("clip.mp4")  # [D], the head's input averaged over the views
    predictions = predictor.predict(["a.mp4", "b.mp4"])      # a list in: a list out, one batched forward
    predictor.predict(frames, fps=30.0)                      # decoded uint8 frames [T, H, W, 3] (numpy or torch)
    predictor.predict(open("clip.mp4", "rb").read())         # an encoded file in memory (decoded with PyAV)

Views are the test views of `evaluate` (REFERENCE §4-5, §8): `data.clips.views` samples, decodes and crops them
under the checkpoint dataset's protocol (`ClipSpec.for_dataset` with the registered dataset's ClipProtocol:
Kinetics-style, or SSv2's segment sampling, 30 fps frame grid and left/top crop), so a video scores here as it does
in evaluate. Clip settings (num_frames, sampling_rate, crop, views) come from the checkpoint's data_config (read as
settings.CheckpointData) unless overridden. `clip_settings` is evaluate's side of the same policy: which of the
checkpoint's clip settings a test adopts.

Memory stays bounded on large inputs (4K, 8K): frames are decoded a few at a time and resized to the test short side
at once, before the next ones are decoded (the same resize evaluate applies, so the views are identical).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch
import yaml
from torch import nn

from mvit_video.data import clips, sampling
from mvit_video.data.base import VideoDataset
from mvit_video.data.clips import ClipSpec
from mvit_video.data.decoding import FrameGridReader, FramesReader, VideoReader, open_video_bytes
from mvit_video.data.transforms import short_side_resize
from mvit_video.eval.multiview import mean_view_features, mean_view_probs
from mvit_video.settings import DATASETS, CheckpointData, DataConfig, import_custom
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

__all__ = ["Predictor", "Prediction", "WindowPrediction", "parse_views", "default_views", "clip_settings",
           "CLIP_KEYS", "MAX_TEMPORAL_VIEWS"]

# More temporal views than this only repeat frames and cost time and memory linearly ("2000x1" ran 2 minutes in
# 1.5 GB); the papers use at most 10 (x3 crops), and 30x3 views of 16x224^2 are already 0.9 GB of floats.
MAX_TEMPORAL_VIEWS = 30

# A video given as a path, the bytes of an encoded file, or decoded uint8 frames [T, H, W, 3] (with fps=).
VideoInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, torch.Tensor]

# Full-size frames decoded per step when the frames are larger than the test short side: each group is resized
# before the next is decoded, so memory holds ~128 MB of them at most (4K: 5 frames of 25 MB, 8K: 1 of 100 MB).
DECODE_BUDGET_BYTES = 128 << 20


def parse_views(views: str | Sequence[int]) -> tuple[int, int]:
    """"KxS" (or (K, S)) -> (K temporal clips, S spatial crops); 1 <= K <= MAX_TEMPORAL_VIEWS, S is 1 or 3.
    Anything else (floats, booleans, other shapes): UserError."""
    try:
        parts = views.lower().split("x") if isinstance(views, str) else list(views)
        if not isinstance(views, str) and not all(isinstance(x, numbers.Integral) and not isinstance(x, bool)
                                                  for x in parts):
            raise TypeError
        k, s = (int(x) for x in parts)
    except (ValueError, TypeError, AttributeError):
        raise UserError(f"views must look like 5x1 or 1x3 (two integers), got {views!r}") from None
    if not 1 <= k <= MAX_TEMPORAL_VIEWS or s not in (1, 3):
        raise UserError(f"views {k}x{s}: need 1 <= K <= {MAX_TEMPORAL_VIEWS} temporal clips and S = 1 or 3 crops")
    return k, s


def _register_checkpoint_dataset(info: Mapping[str, Any], source: str) -> None:
    """A checkpoint of a dataset that the training run's own module registered (config key custom_imports):
    import that module here too, so that its clips are sampled with its protocol. When it cannot be, say so: the
    clips are then sampled as Kinetics' (as for any name not registered, e.g. a converted PySlowFast checkpoint's)."""
    dataset = str((info.get("data_config") or {}).get("dataset", "kinetics"))
    if dataset in DATASETS or not info.get("cfg"):
        return
    try:
        modules = (yaml.safe_load(info["cfg"]) or {}).get("custom_imports") or []
    except yaml.YAMLError:
        return
    if not modules:
        return
    try:
        import_custom(modules)
    except ConfigError as e:
        logger.warning("%s: %s", source, e)
    if dataset not in DATASETS:
        logger.warning("%s: dataset %r is not registered in this process (its run imported %s): its clips are sampled "
                       "with Kinetics' protocol", source, dataset, ", ".join(modules))


def default_views(data_config: CheckpointData | Mapping[str, Any] | None) -> tuple[int, int]:
    """The checkpoint's test views when it records them, else the paper's of its dataset (CheckpointData)."""
    record = CheckpointData.from_dict(data_config)
    return int(record.num_ensemble_views), int(record.num_spatial_crops)


# How a test clip is sampled and shaped: evaluate takes these from the checkpoint unless set on the command line.
CLIP_KEYS = ("num_frames", "sampling_rate", "target_fps", "test_crop_size", "train_jitter_scales",
             "use_offset_sampling", "mean", "std")


def clip_settings(data: DataConfig, data_config: CheckpointData | Mapping[str, Any] | None, path: str | os.PathLike,
                  explicit: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate's policy: the clip settings (CLIP_KEYS) the checkpoint records that differ from `data`, as
    {key: value} to adopt, except for keys set on the command line (`explicit`: data.<key> names), which win with
    a warning. A key the checkpoint does not record is left as `data` has it. Logs what is adopted and kept."""
    if not data_config:
        return {}
    record = CheckpointData.from_dict(data_config, source=str(path))
    explicit = {e.lstrip("+~") for e in explicit}
    adopted: dict[str, Any] = {}
    kept = []
    for key in CLIP_KEYS:
        if key not in record.recorded:
            continue
        ours, theirs = _as_list(getattr(data, key)), _as_list(getattr(record, key))
        if ours == theirs:
            continue
        if f"data.{key}" in explicit:
            kept.append(f"data.{key}={ours} (checkpoint: {theirs})")
        else:
            adopted[key] = theirs
    if adopted:
        logger.info("clip settings from the checkpoint %s: %s (set them on the command line to override)", path,
                    ", ".join(f"data.{k}={v}" for k, v in adopted.items()))
    if kept:
        logger.warning("testing with settings that differ from how %s was trained, as set on the command line: %s",
                       path, ", ".join(kept))
    return adopted


def _as_list(value: Any) -> Any:
    """Lists and tuples alike as lists, so that (32, 40) from the settings equals [32, 40] from a checkpoint."""
    return list(value) if isinstance(value, (list, tuple)) else value


def _positive_number(value: object, what: str, unit: str = "") -> float:
    """`value` as a finite float > 0, else a one-line UserError naming `what` (and the `unit`, e.g. " of seconds")."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number{unit}, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise UserError(f"{what} must be a positive, finite number{unit}, got {value!r}")
    return number


def check_window(window: float) -> float:
    """A window length in seconds must be finite and > 0 (UserError otherwise)."""
    return _positive_number(window, "window", " of seconds")


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
        data_config: CheckpointData | Mapping[str, Any],
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
        dc = CheckpointData.from_dict(data_config, source=source or "data_config")
        missing = dc.lacking(("num_frames", "sampling_rate", "target_fps", "test_crop_size", "mean", "std"))
        if missing:
            raise UserError(f"{source or 'data_config'}: data_config lacks {', '.join(missing)}; cannot sample views")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.data_config = dc  # the checkpoint's, typed: its missing keys filled in with their defaults
        self.class_names = list(class_names) if class_names else None
        self.decoder, self.amp_dtype = decoder, amp_dtype
        self.max_views_per_forward = int(max_views_per_forward)
        self.source = source
        given = {"num_frames": num_frames, "sampling_rate": sampling_rate, "crop_size": crop_size,
                 "views": None if views is None else parse_views(views)}
        checkpoint = {"num_frames": dc.num_frames, "sampling_rate": dc.sampling_rate, "crop_size": dc.test_crop_size,
                      "views": default_views(dc)}
        self.settings = {k: (given[k] if given[k] is not None else checkpoint[k]) for k in checkpoint}
        self.overridden = sorted(k for k, v in given.items() if v is not None and v != checkpoint[k])
        for key in ("num_frames", "sampling_rate", "crop_size"):
            if int(self.settings[key]) < 1:
                raise UserError(f"{key} must be >= 1, got {self.settings[key]}")
        logger.info("%s", self.describe())

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str | None = None, *,
                        use_ema: bool = False, **overrides: Any) -> "Predictor":
        """Load one of our checkpoints, or named weights ("torchvision:mvit_v2_s": torchvision's Kinetics-400
        weights, fetched and converted); device default: cuda when available; overrides as in `Predictor`."""
        from mvit_video.checkpoint import build_from_checkpoint, load_checkpoint_info, load_model, named_checkpoint
        from mvit_video.models import convert

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {device}: no CUDA device is available")
        if convert.is_weights_name(path):
            if use_ema:
                raise UserError(f"{path}: named weights have no EMA copy; drop use_ema")
            info = named_checkpoint(str(path))
            model = build_from_checkpoint(info, path).eval()
            return cls(model, info["data_config"], info.get("class_names"), device=device, source=str(path),
                       **overrides)
        info = load_checkpoint_info(path)
        if not info.get("data_config"):
            raise UserError(f"{path}: the checkpoint has no data_config; cannot sample views")
        _register_checkpoint_dataset(info, str(path))
        model = load_model(path, use_ema=use_ema)
        return cls(model, info["data_config"], info.get("class_names"), device=device, source=str(path),
                   **overrides)

    # ------------------------------------------------------------------ settings

    def describe(self) -> str:
        """One line: the clip settings in use, and which ones override the checkpoint's data_config."""
        s = self.settings
        k, v = s["views"]
        where = f"overridden: {', '.join(self.overridden)}" if self.overridden else "all from the checkpoint"
        if "views" not in self.overridden and "num_ensemble_views" not in self.data_config.recorded:
            # the checkpoint does not record test views: the paper's for its dataset
            where += "; views: not recorded in the checkpoint, the paper's default (SSv2 1x3, else 5x1)"
        return (f"clips of {s['num_frames']} frames every {s['sampling_rate']} (at {self.data_config.target_fps} "
                f"fps), crop {s['crop_size']}, {k}x{v} views ({where})")

    def spec(self, views: str | Sequence[int] | None = None) -> ClipSpec:
        """The test ClipSpec of these settings (views: "KxS" for this call, default the predictor's)."""
        k, s = parse_views(views) if views is not None else self.settings["views"]
        dc, crop = self.data_config, int(self.settings["crop_size"])
        spec = ClipSpec.for_dataset(
            dc.dataset,
            train_short_side=dc.one_crop_short_side(crop),
            frame_grid_fps=float(dc.frame_grid_fps),
            num_frames=int(self.settings["num_frames"]),
            sampling_rate=int(self.settings["sampling_rate"]),
            target_fps=float(dc.target_fps),
            use_offset_sampling=dc.use_offset_sampling,
            num_ensemble_views=k,
            num_spatial_crops=s,
            test_crop_size=crop,
            mean=tuple(dc.mean),
            std=tuple(dc.std),
            decoder=self.decoder,
            decoder_threads=1,  # videos are decoded in the caller's process, one at a time
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
        return _bounded_views(reader, self.spec(views), first, last)

    @staticmethod
    def _open(spec: ClipSpec, video: VideoInput, fps: float | None = None) -> VideoReader:
        """A reader of any accepted input under `spec` (SSv2: frame folders, the 30 fps grid)."""
        if isinstance(video, (str, os.PathLike)):
            if fps is not None:
                raise UserError(f"{video}: fps= is for decoded frames; a video file carries its own frame rate")
            reader = clips.open_reader(video, spec)  # the dataset's reader
        else:
            if isinstance(video, (bytes, bytearray, memoryview)):
                if fps is not None:
                    raise UserError("fps= is for decoded frames; an encoded file carries its own frame rate")
                reader = open_video_bytes(video, num_threads=spec.decoder_threads)
            elif isinstance(video, (np.ndarray, torch.Tensor)):
                reader = FramesReader(_as_frames(video), _check_fps(fps))
            else:
                raise UserError(f"cannot predict on a {type(video).__name__}: give a video path, a list of them, "
                                f"the bytes of an encoded video file, or decoded uint8 frames [T, H, W, 3] with fps=")
            if spec.frame_grid_fps > 0 and abs(reader.fps - spec.frame_grid_fps) > 1e-6:
                reader = FrameGridReader(reader, spec.frame_grid_fps)  # as clips.open_reader does for files
        if not reader.fps > 0:
            reader.close()
            raise UserError(f"{reader.path}: unknown frame rate; cannot place the views in time")
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

    def predict(self, video: VideoInput | Sequence[VideoInput], views: str | Sequence[int] | None = None,
                topk: int = 5, *, fps: float | None = None) -> Prediction | list[Prediction]:
        """Top-k classes of the whole video: mean softmax over the K x S test views (as evaluate scores it).

        `video`: a path; the bytes of an encoded file; decoded uint8 frames [T, H, W, 3] RGB (numpy or torch) with
        their `fps`; or a list of these, which returns a list of predictions (views of several videos share
        forward passes, up to max_views_per_forward views each)."""
        if isinstance(video, (list, tuple)):
            return self._predict_many(list(video), views, topk, fps)
        return self._predict_many([video], views, topk, fps)[0]

    def _predict_many(self, videos: list[VideoInput], views: str | Sequence[int] | None, topk: int,
                      fps: float | None) -> list[Prediction]:
        if topk < 1:
            raise UserError(f"topk must be >= 1, got {topk}")
        spec = self.spec(views)
        per_forward = max(1, self.max_views_per_forward // (spec.num_ensemble_views * spec.num_spatial_crops))
        out: list[Prediction] = []
        for start in range(0, len(videos), per_forward):  # a group's views in memory at a time
            group, metas = [], []
            for video in videos[start : start + per_forward]:
                with self._open(spec, video, fps) as reader:
                    group.append(_bounded_views(reader, spec))
                    metas.append((_video_name(video, reader), reader.duration, reader.fps))
            probs = mean_view_probs(self.model, group, self.device, self.amp_dtype, self.max_views_per_forward)
            for p, (name, duration, video_fps) in zip(probs, metas):
                top, idx = self._topk(p, topk)
                out.append(Prediction(name, top, idx, p, (spec.num_ensemble_views, spec.num_spatial_crops),
                                      duration, video_fps))
        return out

    def timeline(self, video: VideoInput, window: float = 2.0, views: str | Sequence[int] | None = None,
                 topk: int = 5, *, fps: float | None = None) -> list[WindowPrediction]:
        """Top-k of consecutive non-overlapping windows of `window` seconds, each with its own K x S views."""
        window = check_window(window)
        spec = self.spec(views)
        out = []
        with self._open(spec, video, fps) as reader:
            step = max(1, round(window * reader.fps))
            for a in range(0, reader.num_frames, step):  # one window at a time: memory bounded by one window
                b = min(a + step, reader.num_frames)
                probs = self._probs(_bounded_views(reader, spec, a, b))
                top, idx = self._topk(probs, topk)
                out.append(WindowPrediction(a / reader.fps, b / reader.fps, top, idx, probs))
        return out

    def features(self, video: VideoInput, views: str | Sequence[int] | None = None, *,
                 fps: float | None = None) -> torch.Tensor:
        """The pooled embedding [D] (the head's input, model.forward_features) averaged over the views."""
        spec = self.spec(views)
        with self._open(spec, video, fps) as reader:
            views_tensor = _bounded_views(reader, spec)
        return mean_view_features(self.model, [views_tensor], self.device, self.amp_dtype,
                                  self.max_views_per_forward)[0]


def _video_name(video: VideoInput, reader: VideoReader) -> str:
    """What a Prediction calls its video: the path, or "<bytes>" / "<frames>"."""
    return os.fspath(video) if isinstance(video, (str, os.PathLike)) else reader.path


def _check_fps(fps: float | None) -> float:
    if fps is None:
        raise UserError("decoded frames need their frame rate: predict(frames, fps=30.0)")
    return _positive_number(fps, "fps")


def _as_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Decoded frames as a uint8 tensor [T, H, W, 3] (numpy arrays shared, not copied); UserError otherwise."""
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[-1] != 3 or min(shape) < 1:
        raise UserError(f"decoded frames must have shape [T, H, W, 3] (RGB, channels last), got {list(shape)}")
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            raise UserError(f"decoded frames must be uint8 (0-255 RGB), got {frames.dtype}")
        return torch.from_numpy(np.ascontiguousarray(frames))
    if frames.dtype != torch.uint8:
        raise UserError(f"decoded frames must be uint8 (0-255 RGB), got {frames.dtype}")
    return frames.cpu()


def _bounded_views(reader: VideoReader, spec: ClipSpec, first: int = 0, last: int | None = None) -> torch.Tensor:
    """clips.views with bounded memory: the same views [K*S,3,T,crop,crop], but frames larger than the test short
    side are decoded a few at a time and resized at once (float, the resize evaluate applies; the views are
    bit-identical), so a 4K or 8K video never holds all its wanted frames at full size."""
    last = reader.num_frames if last is None else last
    per_view = [[first + i for i in idx] for idx in clips.view_indices(spec, last - first, reader.fps)]
    wanted, positions = sampling.union_indices(per_view)
    size = spec.test_short_side
    head = reader.get_frames(wanted[:1])  # one frame tells the size
    if min(head.shape[1:3]) <= size:  # small frames: decoded as they are, resized by views_of_frames
        frames = torch.cat([head, reader.get_frames(wanted[1:])]) if len(wanted) > 1 else head
        return clips.views_of_frames(frames, positions, spec)
    chunk = max(1, DECODE_BUDGET_BYTES // head[0].numel())
    resized = [_resized(head, size)]
    for a in range(1, len(wanted), chunk):
        resized.append(_resized(reader.get_frames(wanted[a : a + chunk]), size))
    return clips.views_of_frames(torch.cat(resized), positions, spec)


def _resized(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [F,H,W,3] -> float [F,h,w,3] with short side `size`, one frame at a time (one full-size float frame
    in memory). The same call as multi_view_crops makes (float, channels-last, bilinear), so the same values."""
    video = frames.permute(0, 3, 1, 2)  # [F,3,H,W] channels-last, as multi_view_crops sees it
    return torch.cat([short_side_resize(video[f : f + 1].float(), size) for f in range(video.shape[0])]).permute(
        0, 2, 3, 1)


