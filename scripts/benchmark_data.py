#!/usr/bin/env python
"""Data-loading benchmark: clips/s of our train and test loaders vs the raw-decode bound and pytorchvideo.

On a generated list (default 16 videos of 10 s, 340x256, 30 fps, H.264 mp4, cached in a temp dir) it measures,
for each --workers value, with the MViTv2-B clip and test protocol (32 frames x rate 3, 224 crops, 5x1 views):

  train (clips/s, batch of --batch clips):
    ours           build_dataset(cfg, "train") + build_loader: decode + RandomResizedCrop + flip + normalise
    ours (no tf)   the same dataset (VideoDataset, built with a no-op train transform: uint8 frames out) and loader
    raw bound      a loader whose items only open the video and decode the clip's frames with the same decoder
                   and the same frame indices (sampling.train_clip_indices), nothing else
    pytorchvideo   pytorchvideo.data.labeled_video_dataset (PyAV decoder, RandomClipSampler of T*tau/30 s) with
                   the equivalent transforms (uniform temporal subsample, RandomResizedCrop, flip, normalise;
                   written with torchvision.transforms.v2 since pytorchvideo.transforms no longer imports)
  test (videos/s; each video gives K temporal x S spatial views, --views/--crops):
    ours           build_dataset(cfg, "test") (all views from one decode) + build_loader
    ours (no tf)   the same list, spec and loader, with items that stop after the decode (the union of the views'
                   frames from data.clips.open_reader / view_indices): no temporal gather, resize, crop, normalise
    raw bound      decode the union of the K views' frames once per video, nothing else
    pytorchvideo   ConstantClipsPerVideoSampler(K clips, S augs per clip) + short-side resize + uniform crop

and prints the table and the ratios  ours(no tf)/raw bound  (target >= 0.9)  and  ours/pytorchvideo  (target
>= 2). All rows use the same list (each video --list-repeats times, so epoch ends are rare), the same process
settings (torch and decoder threads 1 per process) and the same batch sizes. Timing starts after a warm-up (the
first batch, then the batches the workers prefetched meanwhile) and lasts at least --min-seconds; each row is
measured --rounds times (fresh loaders, alternating order) and keeps its best round. Besides throughput it
reports CPU seconds per unit summed over all processes (from /proc), which a busy shared machine distorts less.
--profile adds a cProfile of our train and test pipelines (workers 0): the share of time per function.

--recipe (alone, or with the rows above) measures the full `k400_b_32x3` training recipe (RandAugment
rand-m7-n4-mstd0.5-inc1, RandomResizedCrop, flip, random erasing 0.25, 2 clips per decoded video), in this process
with one torch thread, as CPU seconds (time.process_time) per decoded video of a loader worker:

    decode only         open + decode the clip's frames (the floor)
    aug.enable=false    the recipe's dataset item with augmentation off (decode, crop, flip, normalise x2):
                        the bound the issue's target (<= 1.3x) is set against
    recipe, workers     data_loader.augment_on=workers: the whole augmentation in the worker
    recipe, device      data_loader.augment_on=device: the worker's share (decode, short side, the draws)
    recipe, old         the per-clip TrainTransform the workers ran before (transforms.py)

and the device half (BatchAugment) per batch of 8 clips (4 videos x 2, 32x256x340 uint8 -> 32x224x224): on this
CPU (one thread) and, when present, CUDA (events, after a warm-up).

Example:  python scripts/benchmark_data.py --workers 0 2
          python scripts/benchmark_data.py --recipe --workers
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import math
import os
import pstats
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------------- videos


@dataclass(frozen=True)
class VideoSpec:
    """The generated benchmark videos."""

    num_videos: int = 16
    list_repeats: int = 4
    seconds: float = 10.0
    width: int = 340
    height: int = 256
    fps: float = 30.0
    ext: str = ".mp4"

    @property
    def key(self) -> str:
        ext = self.ext.lstrip(".")
        return f"v1_{self.num_videos}x{self.seconds:g}s_{self.width}x{self.height}_{self.fps:g}fps_{ext}"


def render_frames(index: int, spec: VideoSpec) -> np.ndarray:
    """uint8 [T,H,W,3]: a panning textured background with moving shapes and a little noise (camera-like content,
    so the codec spends bits the way it does on real footage, not on flat colour)."""
    rng = np.random.default_rng(index)
    n, h, w = int(round(spec.seconds * spec.fps)), spec.height, spec.width
    pan = 2  # pixels per frame
    # smooth random texture, wide enough to pan across
    coarse = rng.integers(0, 256, size=(h // 8 + 2, (w + pan * n) // 8 + 2, 3)).astype(np.float32)
    tex = np.kron(coarse, np.ones((8, 8, 1), np.float32))[:h, : w + pan * n]
    tex = (tex + rng.normal(0, 12, size=tex.shape)).clip(0, 255).astype(np.uint8)
    frames = np.empty((n, h, w, 3), np.uint8)
    colors = rng.integers(0, 256, size=(3, 3), dtype=np.uint8)
    for t in range(n):
        frame = tex[:, pan * t : pan * t + w].copy()
        for k in range(3):
            y = int((h - 40) * (0.5 + 0.45 * math.sin(0.05 * t * (k + 1) + index)))
            x = int((w - 40) * (0.5 + 0.45 * math.cos(0.03 * t * (k + 2) + index)))
            frame[y : y + 40, x : x + 40] = colors[k]
        frames[t] = frame
    return frames


def ensure_videos(root: Path, spec: VideoSpec) -> Path:
    """Generate (once, cached under root/spec.key) the videos and Kinetics-format lists over them (each video
    `spec.list_repeats` times); returns the list dir (data.path_to_data_dir)."""
    from mvit_video.data.encode import write_video
    from mvit_video.utils.io import atomic_write_text

    out = root / spec.key
    lists = out / f"lists_r{spec.list_repeats}"
    if (lists / "train.csv").exists():
        return lists
    (out / "videos").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lines = []
    for i in range(spec.num_videos):
        path = out / "videos" / f"video_{i:04d}{spec.ext}"
        if not path.exists():
            tmp = path.with_name(".tmp_" + path.name)
            write_video(tmp, render_frames(i, spec), fps=spec.fps, crf=23)  # crf 23: ffmpeg's default
            os.replace(tmp, path)  # complete files only: an interrupted run regenerates the missing ones
        lines.append(f"{path} {i % 4}\n")
    atomic_write_text("".join(f"class_{c}\n" for c in range(4)), lists / "classes.txt")
    for split in ("val", "test", "train"):  # train.csv last: it marks the set complete
        atomic_write_text("".join(lines * spec.list_repeats), lists / f"{split}.csv")
    print(f"prepared {spec.num_videos} videos in {time.perf_counter() - t0:.1f} s -> {out}")
    return lists


# ------------------------------------------------------------------------------------------ clip settings


@dataclass(frozen=True)
class ClipSettings:
    """The clip every pipeline produces (MViTv2-B 32x3 by default)."""

    num_frames: int = 32
    sampling_rate: int = 3
    target_fps: float = 30.0
    crop: int = 224
    views: int = 5
    crops: int = 1
    jitter_scales: tuple[int, int] = (256, 320)
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (0.75, 4 / 3)

    @property
    def test_short_side(self) -> int:
        """Short side before the test crops (REFERENCE §8): the crop size with 3 crops, jitter_scales[0] with 1."""
        return self.crop if self.crops == 3 else self.jitter_scales[0]

    @property
    def clip_seconds(self) -> float:
        """The clip span in seconds: T * tau / target_fps (PySlowFast's span, independent of the video fps)."""
        return self.num_frames * self.sampling_rate / self.target_fps


# ------------------------------------------------------------------------------------------------ ours


def compose_cfg(list_dir: Path, clip: ClipSettings, workers: int, decoder: str, batch: int):
    """The project config (typed) for a Kinetics-format list, with the benchmark's clip and loader settings."""
    from hydra import compose, initialize_config_dir

    overrides = [
        "data.dataset=kinetics",
        f"data.path_to_data_dir={list_dir}",
        "data.path_prefix=",
        f"data.decoder={decoder}",
        f"data.num_frames={clip.num_frames}",
        f"data.sampling_rate={clip.sampling_rate}",
        f"data.target_fps={clip.target_fps}",
        f"data.train_crop_size={clip.crop}",
        f"data.test_crop_size={clip.crop}",
        f"data.train_jitter_scales=[{clip.jitter_scales[0]},{clip.jitter_scales[1]}]",
        f"data.train_jitter_scales_relative=[{clip.scale[0]},{clip.scale[1]}]",
        f"data.train_jitter_aspect_relative=[{clip.ratio[0]},{clip.ratio[1]}]",
        f"data.mean=[{','.join(map(str, clip.mean))}]",
        f"data.std=[{','.join(map(str, clip.std))}]",
        "data.random_flip=true",
        "data.num_sample=1",
        "aug.enable=false",
        "mixup.enable=false",
        f"data_loader.num_workers={workers}",
        "data_loader.pin_memory=false",
        f"data_loader.persistent_workers={str(workers > 0).lower()}",
        "data_loader.decoder_threads=1",
        f"train.batch_size={batch}",
        "test.batch_size=1",
        f"test.num_ensemble_views={clip.views}",
        f"test.num_spatial_crops={clip.crops}",
    ]
    from mvit_video.config import build_config

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return build_config(compose(config_name="config", overrides=overrides))


def _no_train_transform(frames: torch.Tensor) -> torch.Tensor:
    """Transforms off: the decoded uint8 frames [T,H,W,3] as they are (no permute either: a permuted view would
    make the dataset's stack a strided copy, a cost of this no-op, not of the pipeline)."""
    return frames


class DecodedViews(Dataset):
    """The test dataset's items stopped after the decode: `views` holds the decoded union of the K views' frames
    (uint8 [F,H,W,3]), read as data.clips.views reads them; the gather, resize, crops and normalisation are left
    out (in our pipeline they are one fused pass, data.clips.views_of_frames)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        from mvit_video.data import sampling
        from mvit_video.data.clips import open_reader, view_indices

        ds, spec = self.dataset, self.dataset.spec
        with open_reader(ds.full_paths[index], spec) as reader:
            wanted, _ = sampling.union_indices(view_indices(spec, reader.num_frames, reader.fps))
            frames = reader.get_frames(wanted)
        return {"views": frames, "label": ds.labels[index], "index": index, "path": ds.paths[index], "ok": True}


def ours_loader(list_dir: Path, clip: ClipSettings, split: str, workers: int, decoder: str, batch: int,
                transforms: bool = True) -> DataLoader:
    """Our dataset + loader exactly as training/evaluation build them; transforms=False: the same pieces with the
    transforms left out (a VideoDataset with a no-op train transform; DecodedViews for test)."""
    from mvit_video.data import VideoDataset, build_dataset, build_loader

    cfg = compose_cfg(list_dir, clip, workers, decoder, batch)
    dataset = build_dataset(cfg, split)
    if not transforms:
        if split == "train":
            dataset = VideoDataset(dataset.paths, dataset.full_paths, dataset.labels, "train", dataset.spec,
                                   train_transform=_no_train_transform, num_sample=dataset.num_sample,
                                   max_bad_retries=dataset.max_bad_retries, class_names=dataset.class_names)
        else:
            dataset = DecodedViews(dataset)
    return build_loader(dataset, split, cfg.data_loader, seed=cfg.seed,
                        batch_size=cfg.train.batch_size if split == "train" else cfg.test.batch_size)


# ------------------------------------------------------------------------------------------- raw bound


class RawDecode(Dataset):
    """Items = only the frames the pipeline needs, decoded with our reader: the floor any loader pays."""

    def __init__(self, paths: Sequence[str], clip: ClipSettings, split: str, decoder: str) -> None:
        self.paths, self.clip, self.split, self.decoder = list(paths), clip, split, decoder

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from mvit_video.data import sampling
        from mvit_video.data.decoding import open_video

        c = self.clip
        with open_video(self.paths[i], self.decoder, 1) as reader:
            n, fps = reader.num_frames, reader.fps
            if self.split == "train":
                idx = sampling.train_clip_indices(n, fps, c.num_frames, c.sampling_rate, c.target_fps)
            else:
                views = [sampling.eval_clip_indices(n, fps, v, c.views, c.num_frames, c.sampling_rate,
                                                    c.target_fps, True) for v in range(c.views)]
                idx = sampling.union_indices(views)[0]
            return reader.get_frames(idx)


def _stack(items: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    return torch.stack(items) if len({t.shape for t in items}) == 1 else items


def raw_loader(paths: Sequence[str], clip: ClipSettings, split: str, workers: int, decoder: str,
               batch: int) -> DataLoader:
    from mvit_video.data.loader import worker_init_fn

    return DataLoader(RawDecode(paths, clip, split, decoder), batch_size=batch if split == "train" else 1,
                      shuffle=split == "train", num_workers=workers, collate_fn=_stack,
                      persistent_workers=workers > 0, worker_init_fn=worker_init_fn if workers > 0 else None)


# ------------------------------------------------------------------------------------------ pytorchvideo


def uniform_temporal_subsample(video: torch.Tensor, num_samples: int, dim: int = 1) -> torch.Tensor:
    """pytorchvideo's UniformTemporalSubsample: linspace(0, T-1, n) indices along `dim`, truncated."""
    t = video.shape[dim]
    idx = torch.clamp(torch.linspace(0, t - 1, num_samples), 0, t - 1).long()
    return torch.index_select(video, dim, idx)


class PTVTrainTransform:
    """pytorchvideo clip dict -> {"video": [3,T,crop,crop] normalised, "label"}: the transforms ours applies."""

    def __init__(self, clip: ClipSettings) -> None:
        from torchvision.transforms import v2

        self.clip = clip
        self.crop = v2.RandomResizedCrop(clip.crop, scale=clip.scale, ratio=clip.ratio, antialias=False)
        self.flip = v2.RandomHorizontalFlip()

    def __call__(self, sample: dict) -> dict:
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as TF

        video = uniform_temporal_subsample(sample["video"], self.clip.num_frames)  # [3,T,H,W] float 0..255
        video = tv_tensors.Video(video.permute(1, 0, 2, 3))  # [T,3,H,W]
        video = self.flip(self.crop(video)) / 255.0
        video = TF.normalize(video.as_subclass(torch.Tensor), list(self.clip.mean), list(self.clip.std))
        return {"video": video.permute(1, 0, 2, 3).contiguous(), "label": sample["label"]}


class PTVTestTransform:
    """pytorchvideo clip dict -> one test view: short side resize (as ours), crop aug_index (0/1/2), normalise."""

    def __init__(self, clip: ClipSettings) -> None:
        self.clip = clip

    def __call__(self, sample: dict) -> dict:
        import torch.nn.functional as F

        c = self.clip
        video = uniform_temporal_subsample(sample["video"], c.num_frames).permute(1, 0, 2, 3)  # [T,3,H,W]
        h, w = video.shape[-2:]
        short = c.test_short_side
        size = (short, int(math.floor(w / h * short))) if h <= w else (int(math.floor(h / w * short)), short)
        video = F.interpolate(video, size=size, mode="bilinear", align_corners=False)
        h, w = video.shape[-2:]
        spatial = int(sample["aug_index"]) if c.crops == 3 else 1
        y, x = math.ceil((h - c.crop) / 2), math.ceil((w - c.crop) / 2)
        if w >= h:
            x = {0: 0, 1: x, 2: w - c.crop}[spatial]
        else:
            y = {0: 0, 1: y, 2: h - c.crop}[spatial]
        video = video[..., y : y + c.crop, x : x + c.crop] / 255.0
        mean = torch.tensor(c.mean).view(1, 3, 1, 1)
        std = torch.tensor(c.std).view(1, 3, 1, 1)
        return {"video": ((video - mean) / std).permute(1, 0, 2, 3).contiguous(), "label": sample["label"]}


def pytorchvideo_dataset(list_file: str | os.PathLike, clip: ClipSettings, split: str, transform: bool = True):
    """pytorchvideo's Kinetics dataset (PyAV, no audio) on our list with the equivalent clip sampler."""
    import pytorchvideo.data
    from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler, RandomClipSampler

    if split == "train":
        sampler = RandomClipSampler(clip.clip_seconds)
        video_sampler = torch.utils.data.RandomSampler
        tf = PTVTrainTransform(clip) if transform else None
    else:
        sampler = ConstantClipsPerVideoSampler(clip.clip_seconds, clip.views, clip.crops)
        video_sampler = torch.utils.data.SequentialSampler
        tf = PTVTestTransform(clip) if transform else None
    return pytorchvideo.data.Kinetics(
        data_path=str(list_file), clip_sampler=sampler, video_sampler=video_sampler, transform=tf,
        decode_audio=False, decoder="pyav",
    )


def ptv_loader(list_dir: Path, clip: ClipSettings, split: str, workers: int, batch: int) -> DataLoader:
    from mvit_video.data.loader import worker_init_fn

    dataset = pytorchvideo_dataset(list_dir / f"{split}.csv", clip, split)
    # test: one item per view; a batch of K*S items is one video's views, as ours gives per video
    return DataLoader(dataset, batch_size=batch if split == "train" else clip.views * clip.crops,
                      num_workers=workers, persistent_workers=workers > 0,
                      worker_init_fn=worker_init_fn if workers > 0 else None)


# ----------------------------------------------------------------------------------------------- timing


def _forever(loader: Iterable) -> Iterator:
    """Batches across epochs (a fresh epoch iterator each time; persistent workers keep their processes)."""
    for epoch in itertools.count():
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise RuntimeError("the loader produced no batch")


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live child processes (the loader workers), from /proc:
    a measure of work done that, unlike wall time, does not depend on what else the machine runs."""
    total = time.process_time()
    try:
        tick = os.sysconf("SC_CLK_TCK")
        children = []
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                children += f.read().split()
        for pid in children:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    except (OSError, ValueError, IndexError):  # not Linux, or a worker exited between the reads
        pass
    return total


@dataclass
class Rate:
    """A measured row: units per wall second, and CPU seconds (all processes) per unit."""

    per_s: float
    cpu_per_unit: float


def measure(loader: DataLoader, count: Callable[[Any], int], min_units: int, min_seconds: float,
            max_seconds: float) -> Rate:
    """Steady-state throughput over at least `min_units` units and `min_seconds` (at most `max_seconds`).

    Warm-up first: one batch (worker start-up, imports, first file opens) plus the batches the workers prefetched
    meanwhile (prefetch_factor per worker), which would otherwise arrive instantly and inflate the rate."""
    it = _forever(loader)
    workers = int(getattr(loader, "num_workers", 0))
    for _ in range(1 + workers * int(getattr(loader, "prefetch_factor", None) or 0)):
        next(it)
    units, t0, c0 = 0, time.perf_counter(), _cpu_seconds()
    while True:
        elapsed = time.perf_counter() - t0
        if (units >= min_units and elapsed >= min_seconds) or elapsed >= max_seconds:
            break
        units += count(next(it))
    elapsed, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    it.close()
    del it
    return Rate(units / elapsed, cpu / max(units, 1))


def _clips(batch: Any) -> int:
    if isinstance(batch, dict):
        return int(batch["video"].shape[0])
    return len(batch)


def _videos(batch: Any) -> int:
    if isinstance(batch, dict) and "views" in batch:
        return len(batch["views"])  # ours: one entry per video
    return 1  # raw: one video per batch; pytorchvideo: a batch is one video's K*S views


def run_rows(list_dir: Path, clip: ClipSettings, workers: int, decoder: str, batch: int, train_clips: int,
             test_videos: int, min_seconds: float, max_seconds: float, rounds: int) -> dict[str, dict[str, Rate]]:
    """All measurements for one worker count: {"train"|"test": {row name: best Rate over `rounds`}}.

    The rows of a split are measured in rounds, forward then backward order (A B C D, D C B A, ...), each time
    with a fresh loader, and each row keeps its best round: a load spike on a shared machine then hits at most
    one round of a row, and no row is favoured by its position."""
    paths = [line.rsplit(" ", 1)[0] for line in (list_dir / "train.csv").read_text().splitlines() if line.strip()]
    # same list for every pipeline (videos repeated --list-repeats times)
    results: dict[str, dict[str, Rate]] = {"train": {}, "test": {}}
    for split, count, units in (("train", _clips, train_clips), ("test", _videos, test_videos)):
        makers = {
            "ours": lambda: ours_loader(list_dir, clip, split, workers, decoder, batch, transforms=True),
            "ours (no tf)": lambda: ours_loader(list_dir, clip, split, workers, decoder, batch, transforms=False),
            "raw bound": lambda: raw_loader(paths, clip, split, workers, decoder, batch),
            "pytorchvideo": lambda: ptv_loader(list_dir, clip, split, workers, batch),
        }
        order = list(makers)
        for r in range(rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                rate = measure(makers[name](), count, units, min_seconds, max_seconds)
                best = results[split].get(name)
                results[split][name] = Rate(max(rate.per_s, best.per_s if best else 0.0),
                                            min(rate.cpu_per_unit, best.cpu_per_unit if best else math.inf))
                unit = "clip" if split == "train" else "video"
                print(f"  round {r} workers={workers} {split:<5} {name:<13} {rate.per_s:8.2f} {unit}s/s  "
                      f"{1000 * rate.cpu_per_unit:8.0f} CPU ms/{unit}", flush=True)
    return results


def print_table(all_results: dict[int, dict[str, dict[str, Rate]]], clip: ClipSettings) -> None:
    """Markdown table: throughput (wall) and CPU cost per unit, and the two target ratios on both."""
    names = ["ours", "ours (no tf)", "raw bound", "pytorchvideo"]
    header = ("| split | workers | " + " | ".join(names)
              + " | ours(no tf)/raw (target >= 0.9) | ours/pytorchvideo (target >= 2) |")
    print(f"\nthroughput per wall second (train: clips/s; test: videos/s, {clip.views}x{clip.crops} views each); "
          "in brackets: the same ratio from CPU time per unit (all processes), insensitive to machine load")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for workers, results in all_results.items():
        for split in ("train", "test"):
            r = results[split]
            raw_ratio = r["ours (no tf)"].per_s / r["raw bound"].per_s
            raw_cpu = r["raw bound"].cpu_per_unit / r["ours (no tf)"].cpu_per_unit
            ptv_ratio = r["ours"].per_s / r["pytorchvideo"].per_s
            ptv_cpu = r["pytorchvideo"].cpu_per_unit / r["ours"].cpu_per_unit
            print(f"| {split} | {workers} | " + " | ".join(f"{r[n].per_s:.2f}" for n in names)
                  + f" | {raw_ratio:.2f} ({raw_cpu:.2f}) | {ptv_ratio:.2f} ({ptv_cpu:.2f}) |")


# ------------------------------------------------------------------------------------------------ profile


def profile_ours(list_dir: Path, clip: ClipSettings, decoder: str, batch: int, train_clips: int,
                 test_videos: int, top: int = 18) -> None:
    """cProfile of our train and test pipelines in this process (workers 0): the functions that take the time."""
    for split, count, units in (("train", _clips, train_clips), ("test", _videos, test_videos)):
        loader = ours_loader(list_dir, clip, split, 0, decoder, batch)
        it = _forever(loader)
        next(it)
        prof = cProfile.Profile()
        got = 0
        prof.enable()
        while got < units:
            got += count(next(it))
        prof.disable()
        it.close()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        total = stats.total_tt  # type: ignore[attr-defined]
        print(f"\nprofile: ours {split}, workers 0, {got} {'clips' if split == 'train' else 'videos'}, "
              f"{total:.2f} s; functions by own time (tottime) and cumulative time, share of the total:")
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
        print(f"  {'own %':>6} {'cum %':>6} {'calls':>7}  function")
        for (file, line, func), (cc, nc, tt, ct, _) in rows:
            where = f"{Path(file).name}:{line}" if line else file
            print(f"  {100 * tt / total:6.1f} {100 * ct / total:6.1f} {nc:7d}  {func} ({where})")


# ------------------------------------------------------------------------------------ the full recipe


def recipe_cfg(list_dir: Path, decoder: str, *overrides: str):
    """The k400_b_32x3 preset (typed) over the benchmark list."""
    from mvit_video.config import build_config
    from mvit_video.config import compose as compose_project

    return build_config(compose_project(["+experiment=k400_b_32x3", f"data.path_to_data_dir={list_dir}",
                                         "data.path_prefix=", f"data.decoder={decoder}",
                                         "data_loader.decoder_threads=1", "data_loader.num_workers=0",
                                         *overrides]))


def _cpu_per_item(dataset: Any, keys: Sequence[Any], rounds: int) -> float:
    """Best over `rounds` of the mean process CPU seconds per dataset[key] (after one warm-up item)."""
    dataset[keys[0]]
    best = math.inf
    for _ in range(rounds):
        t0 = time.process_time()
        for k in keys:
            dataset[k]
        best = min(best, (time.process_time() - t0) / len(keys))
    return best


class _DecodeOnly(Dataset):
    """dataset[(seed, epoch, index)] -> the train clip's decoded frames, nothing else (the recipe's sampling)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> torch.Tensor:
        from mvit_video.data.clips import open_reader, train_indices

        spec = self.dataset.spec
        with open_reader(self.dataset.full_paths[key[2]], spec) as reader:
            return reader.get_frames(train_indices(spec, reader.num_frames, reader.fps))


def recipe_costs(list_dir: Path, decoder: str, videos: int, rounds: int, batches: int) -> dict[str, float]:
    """Worker CPU seconds per decoded video for the k400_b_32x3 recipe and its bounds, and the device
    augmentation time per batch of 8 clips (see the module doc); prints a table, returns the figures."""
    from mvit_video.data import build_dataset
    from mvit_video.data.augment import BatchAugment
    from mvit_video.data.base import VideoDataset
    from mvit_video.data.loader import train_collate
    from mvit_video.data.transforms import build_train_transform

    n = len((list_dir / "train.csv").read_text().splitlines())
    keys = [(0, 0, i % n) for i in range(videos)]
    workers_cfg = recipe_cfg(list_dir, decoder, "data_loader.augment_on=workers")
    device_cfg = recipe_cfg(list_dir, decoder, "data_loader.augment_on=device")
    off_cfg = recipe_cfg(list_dir, decoder, "data_loader.augment_on=workers", "aug.enable=false")
    recipe = build_dataset(workers_cfg, "train", device="cpu")
    on_device = build_dataset(device_cfg, "train", device="cpu")
    old = VideoDataset(recipe.paths, recipe.full_paths, recipe.labels, "train", recipe.spec,
                       train_transform=build_train_transform(workers_cfg.data, workers_cfg.aug,
                                                             decode_short_side=workers_cfg.data.train_jitter_scales[0]),
                       num_sample=recipe.num_sample)
    rows = {
        "decode only": _DecodeOnly(recipe),
        "aug.enable=false": build_dataset(off_cfg, "train", device="cpu"),
        "recipe, device (worker share)": on_device,
        "recipe, workers": recipe,
        "recipe, old per-clip transform": old,
    }
    cost = {name: _cpu_per_item(ds, keys, rounds) for name, ds in rows.items()}
    bound = cost["aug.enable=false"]
    print(f"\nk400_b_32x3 recipe, {recipe.num_sample} clips per decoded video, one thread, {videos} videos x "
          f"best of {rounds}: worker CPU seconds per decoded video")
    print("| worker item | CPU s / video | vs aug.enable=false (target <= 1.3 for the device split) |")
    print("|---|---|---|")
    for name, c in cost.items():
        print(f"| {name} | {c:.3f} | {c / bound:.2f}x |")

    # the device half: 4 videos x 2 clips per batch, the frames and draws the workers made
    items = [on_device[(0, 1, i % n)] for i in range(4 * batches)]
    augment = BatchAugment(on_device.train_transform.spec)
    cpu_batches = [train_collate(items[4 * b : 4 * b + 4]) for b in range(batches)]
    b0 = cpu_batches[0]
    augment(b0["frames"], b0["frame_sizes"], b0["source"], b0["params"])  # warm-up
    t0 = time.process_time()
    for b in cpu_batches:
        augment(b["frames"], b["frame_sizes"], b["source"], b["params"])
    cost["device aug per batch, cpu"] = (time.process_time() - t0) / batches
    shape = tuple(b0["frames"].shape)
    print(f"\ndevice augmentation of one batch ({len(b0['params'])} clips, frames {shape} uint8 -> "
          f"{recipe.spec.num_frames}x{on_device.train_transform.spec.crop_size}^2):")
    print(f"  cpu, {torch.get_num_threads()} thread(s): {1000 * cost['device aug per batch, cpu']:.0f} ms "
          "(CPU time)")
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        gpu = [(b["frames"].to(dev), b) for b in cpu_batches]
        for frames, b in gpu[:2]:
            augment(frames, b["frame_sizes"], b["source"], b["params"])
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for frames, b in gpu:
            augment(frames, b["frame_sizes"], b["source"], b["params"])
        end.record()
        torch.cuda.synchronize()
        cost["device aug per batch, cuda"] = start.elapsed_time(end) / 1000 / len(gpu)
        print(f"  {torch.cuda.get_device_name()}: {1000 * cost['device aug per batch, cuda']:.1f} ms (target <= 10)")
    else:
        print("  cuda: not present on this machine (unmeasured)")
    return cost


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-videos", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0, help="video length")
    p.add_argument("--size", default="340x256", help="video WIDTHxHEIGHT")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--ext", default=".mp4", choices=(".mp4", ".webm"), help="container/codec (h264 / vp9)")
    p.add_argument("--workers", type=int, nargs="*", default=[0, 2],
                   help="loader worker counts to measure (none: skip the throughput rows, e.g. with --recipe)")
    p.add_argument("--decoder", default="decord", choices=("decord", "pyav"), help="our decoder (data.decoder)")
    p.add_argument("--num-frames", type=int, default=32)
    p.add_argument("--sampling-rate", type=int, default=3)
    p.add_argument("--crop", type=int, default=224, help="train and test crop size")
    p.add_argument("--views", type=int, default=5, help="temporal test views K")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3),
                   help="spatial test crops S (MViTv2's Kinetics protocol: 5 views x 1 crop)")
    p.add_argument("--batch", type=int, default=4, help="train clips per batch")
    p.add_argument("--train-clips", type=int, default=8, help="at least this many clips per train row and round")
    p.add_argument("--test-videos", type=int, default=2, help="at least this many videos per test row and round")
    p.add_argument("--min-seconds", type=float, default=2.0, help="at least this long per row and round")
    p.add_argument("--max-seconds", type=float, default=15.0, help="at most this long per row and round")
    p.add_argument("--rounds", type=int, default=2, help="measurement rounds per row (the best counts)")
    p.add_argument("--list-repeats", type=int, default=4,
                   help="each video appears this many times in the list: epochs long enough that epoch ends "
                        "(workers idle while a new epoch starts) are rare in the timed window")
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "mvit_video_benchmark")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--profile", action="store_true", help="also print a cProfile of our pipelines (workers 0)")
    p.add_argument("--recipe", action="store_true",
                   help="also measure the full k400_b_32x3 recipe: worker CPU-s per video, device augmentation")
    p.add_argument("--recipe-videos", type=int, default=8, help="decoded videos per --recipe row and round")
    p.add_argument("--recipe-batches", type=int, default=3, help="batches of 8 clips timed for the device half")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(0)
    torch.manual_seed(0)
    width, height = (int(x) for x in args.size.lower().split("x"))
    spec = VideoSpec(args.num_videos, args.list_repeats, args.seconds, width, height, args.fps, args.ext)
    clip = ClipSettings(num_frames=args.num_frames, sampling_rate=args.sampling_rate, crop=args.crop,
                        views=args.views, crops=args.crops)
    list_dir = ensure_videos(args.cache_dir, spec)
    print(f"{spec.num_videos} videos {spec.seconds:g} s {spec.width}x{spec.height} {spec.fps:g} fps {spec.ext}; "
          f"clip {clip.num_frames}x{clip.sampling_rate} crop {clip.crop}; test {clip.views}x{clip.crops} views; "
          f"decoder {args.decoder}; torch threads {args.threads}; {os.cpu_count()} cpus")
    all_results = {}
    for workers in args.workers:
        all_results[workers] = run_rows(list_dir, clip, workers, args.decoder, args.batch, args.train_clips,
                                        args.test_videos, args.min_seconds, args.max_seconds, args.rounds)
    if all_results:
        print_table(all_results, clip)
    if args.recipe:
        recipe_costs(list_dir, args.decoder, args.recipe_videos, args.rounds, args.recipe_batches)
    if args.profile:
        profile_ours(list_dir, clip, args.decoder, args.batch, args.train_clips, args.test_videos)
    return 0


if __name__ == "__main__":
    sys.exit(main())
