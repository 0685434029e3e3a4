"""From an open video to clips: `ClipSpec` (how clips are sampled and shaped, resolved once), the reader a spec
opens, the frame indices of a training clip, and `views`, the K x S test views of a video (REFERENCE §4-5, §8).

`views` is the one implementation of the test protocol: the dataset's val/test items, `Predictor` (and so
`scripts/infer.py` and `mvit_video.extract`) all call it, so a video scores the same everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from mvit_video.data import sampling
from mvit_video.data.decoding import FrameFolderReader, FrameGridReader, VideoReader, open_video
from mvit_video.data.transforms import eval_short_side, multi_view_crops
from mvit_video.settings import DataConfig, TestConfig, clip_protocol

__all__ = ["ClipSpec", "open_reader", "train_indices", "view_indices", "views", "views_of_frames"]


@dataclass(frozen=True)
class ClipSpec:
    """How clips are sampled and shaped. Build it with `ClipSpec.for_dataset` (or `from_config`), which applies
    the dataset's clip protocol (settings.ClipProtocol, from the dataset registry); the fields are the resolved
    values, none with a default of its own: the data.* / test.* values come from the config (conf/config.yaml)
    or a checkpoint's data_config, the rest from the protocol."""

    num_frames: int
    sampling_rate: int
    target_fps: float
    segment_sampling: bool  # one frame per segment, sampling_rate ignored (SSv2)
    use_offset_sampling: bool
    num_ensemble_views: int
    num_spatial_crops: int
    test_crop_size: int
    test_short_side: int
    one_crop_index: int  # the crop of a 1-crop test view: 1 = center, 0 = left/top (PySlowFast's SSv2)
    mean: Sequence[float]
    std: Sequence[float]
    decoder: str
    decoder_threads: int
    frame_grid_fps: float  # > 0: videos resampled to this rate by timestamp (SSv2's 30 fps JPEG grid)
    frame_folders: bool  # a path that is a folder is a video of JPEG frames (SSv2's extracted layout)

    @classmethod
    def for_dataset(cls, dataset: str, *, train_short_side: int, frame_grid_fps: float = 0.0,
                    **fields) -> "ClipSpec":
        """The spec of `dataset`'s test protocol (settings.clip_protocol: a registered dataset's, Kinetics' for
        any other name); `fields` are the ClipSpec fields every dataset shares.

        The test short side is the crop when the protocol says so (SSv2, PySlowFast's slowfast/datasets/ssv2.py),
        else (Kinetics, the synthetic set) the crop with 3 crops and `train_short_side`
        (data.train_jitter_scales[0]) with 1. `frame_grid_fps` (data.frame_grid_fps) applies to a protocol with a
        frame grid only (SSv2's 30 fps JPEGs)."""
        protocol = clip_protocol(dataset)
        crop = int(fields["test_crop_size"])
        short_side = crop if protocol.short_side_is_crop else eval_short_side(
            crop, int(fields["num_spatial_crops"]), [train_short_side])
        return cls(**fields, segment_sampling=protocol.segment_sampling, test_short_side=short_side,
                   one_crop_index=protocol.one_crop_index,
                   frame_grid_fps=float(frame_grid_fps) if protocol.frame_grid else 0.0,
                   frame_folders=protocol.frame_folders)

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
