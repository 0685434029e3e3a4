"""From an open video to clips: `ClipSpec` (how clips are sampled and shaped, resolved once), the reader a spec
opens, the frame indices of a training clip, and `views`, the K x S test views of a video (REFERENCE §4-5, §8).

`views` is the one implementation of the test protocol: the dataset's val/test items, `Predictor` (and so
`scripts/infer.py` and `mvit_video.extract`) all call it, so a video scores the same everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from mvit_video.data import sampling
from mvit_video.data.decoding import FrameFolderReader, FrameGridReader, VideoReader, open_video
from mvit_video.data.transforms import eval_short_side, multi_view_crops
from mvit_video.settings import DataConfig, TestConfig

__all__ = ["ClipSpec", "open_reader", "train_indices", "view_indices", "views", "views_of_frames"]


@dataclass(frozen=True)
class ClipSpec:
    """How clips are sampled and shaped. Build it with `ClipSpec.for_dataset`, which applies the dataset's
    protocol (Kinetics-style or SSv2); the fields are the resolved values."""

    num_frames: int
    sampling_rate: int
    target_fps: float = 30.0
    segment_sampling: bool = False  # SSv2: one frame per segment, sampling_rate ignored
    use_offset_sampling: bool = True
    num_ensemble_views: int = 1
    num_spatial_crops: int = 1
    test_crop_size: int = 224
    test_short_side: int = 224
    one_crop_index: int = 1  # the crop of a 1-crop test view: 1 = center; PySlowFast's SSv2 takes 0 (left/top)
    mean: Sequence[float] = field(default_factory=lambda: (0.45, 0.45, 0.45))
    std: Sequence[float] = field(default_factory=lambda: (0.225, 0.225, 0.225))
    decoder: str = "decord"
    decoder_threads: int = 1
    frame_grid_fps: float = 0.0  # > 0: videos resampled to this rate by timestamp (SSv2's 30 fps JPEG grid)
    frame_folders: bool = False  # a path that is a folder is a video of JPEG frames (SSv2's extracted layout)

    @classmethod
    def for_dataset(cls, dataset: str, *, train_short_side: int, frame_grid_fps: float = 0.0,
                    **fields) -> "ClipSpec":
        """The spec of `dataset`'s test protocol; `fields` are the ClipSpec fields every dataset shares.

        Kinetics (and the synthetic set): test short side = the crop with 3 crops, `train_short_side`
        (data.train_jitter_scales[0]) with 1; center crop. SSv2 (PySlowFast's slowfast/datasets/ssv2.py): segment
        sampling, short side = the crop for 1 and 3 crops, the 1-crop view is the left/top one, frames on the
        `frame_grid_fps` grid, and a folder of JPEG frames is one video."""
        crop = int(fields["test_crop_size"])
        if dataset == "ssv2":
            return cls(**fields, segment_sampling=True, test_short_side=crop, one_crop_index=0,
                       frame_grid_fps=float(frame_grid_fps), frame_folders=True)
        return cls(**fields, test_short_side=eval_short_side(crop, int(fields["num_spatial_crops"]),
                                                             [train_short_side]))

    @classmethod
    def from_config(cls, data: DataConfig, test: TestConfig, decoder_threads: int = 1) -> "ClipSpec":
        """The spec of data.dataset's protocol from the data.* and test.* settings (decoder_threads:
        data_loader.decoder_threads)."""
        return cls.for_dataset(
            data.dataset,
            train_short_side=data.train_jitter_scales[0],
            frame_grid_fps=data.frame_grid_fps,
            num_frames=data.num_frames,
            sampling_rate=data.sampling_rate,
            target_fps=data.target_fps,
            use_offset_sampling=data.use_offset_sampling,
            num_ensemble_views=test.num_ensemble_views,
            num_spatial_crops=test.num_spatial_crops,
            test_crop_size=data.test_crop_size,
            mean=tuple(data.mean),
            std=tuple(data.std),
            decoder=data.decoder,
            decoder_threads=decoder_threads,
        )


def open_reader(path: str | os.PathLike, spec: ClipSpec) -> VideoReader:
    """The reader of `path` under `spec`: a frame folder or a decoded video, seen on the spec's frame grid."""
    path = os.fspath(path)
    if spec.frame_folders and os.path.isdir(path):  # extracted frames, already on the 30 fps grid
        return FrameFolderReader(path, spec.frame_grid_fps or 30.0)
    reader = open_video(path, spec.decoder, spec.decoder_threads)
    if spec.frame_grid_fps > 0 and abs(reader.fps - spec.frame_grid_fps) > 1e-6:
        return FrameGridReader(reader, spec.frame_grid_fps)
    return reader


def train_indices(spec: ClipSpec, num_video_frames: int, fps: float) -> list[int]:
    """Frame indices of one random training clip (random draws from python's global RNG)."""
    if spec.segment_sampling:
        return sampling.segment_indices(num_video_frames, spec.num_frames, train=True)
    return sampling.train_clip_indices(num_video_frames, fps, spec.num_frames, spec.sampling_rate, spec.target_fps)


def view_indices(spec: ClipSpec, num_video_frames: int, fps: float) -> list[list[int]]:
    """Frame indices of each temporal test view (K lists of T indices)."""
    k = spec.num_ensemble_views
    if spec.segment_sampling:
        return [sampling.segment_indices(num_video_frames, spec.num_frames, False, v, k) for v in range(k)]
    return [
        sampling.eval_clip_indices(num_video_frames, fps, v, k, spec.num_frames, spec.sampling_rate, spec.target_fps,
                                   spec.use_offset_sampling)
        for v in range(k)
    ]


def views_of_frames(frames: torch.Tensor, clips: Sequence[Sequence[int]], spec: ClipSpec) -> torch.Tensor:
    """Decoded uint8 frames [F,H,W,3] and the K temporal views as index lists into them -> the normalised views
    [K*S,3,T,crop,crop] (short-side resize, 1 or 3 crops, normalisation; view v = temporal v // S, spatial v % S)."""
    return multi_view_crops(frames, clips, spec.test_crop_size, spec.num_spatial_crops, spec.mean, spec.std,
                            spec.test_short_side, one_crop_index=spec.one_crop_index)


def views(reader: VideoReader, spec: ClipSpec, first: int = 0, last: Optional[int] = None) -> torch.Tensor:
    """The K x S test views [K*S,3,T,crop,crop] of frames [first, last) of an open video (default: all of it):
    the views' frame indices, one decode of their union (one forward pass over the file), crops, normalisation."""
    last = reader.num_frames if last is None else last
    per_view = [[first + i for i in idx] for idx in view_indices(spec, last - first, reader.fps)]
    wanted, clips = sampling.union_indices(per_view)
    return views_of_frames(reader.get_frames(wanted), clips, spec)
