"""VideoDataset: list of (path, label) -> training clips or multi-view test items, robust to bad files.

Train items: `{"video": [N,3,T,H,W], "label", "index", "bad_paths"}` (one decode, N augmented clips; a bad video is
replaced by a random other one, at most `max_bad_retries` times). With the augmentation on the training device
(`augment_on_device`), `{"frames": uint8 [T,H,W,3], "params": N ClipParams, ...}` instead: the frames once, the N
clips' random draws beside them (data/augment.py), applied batched after the copy to the device. Val/test items:
`{"views": [K*S,3,T,c,c], "label", "index", "path", "ok"}` with view v = temporal v // S, spatial v % S, all views
from one decode.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import struct
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mvit_video.data.augment import TrainAugment, build_aug_spec
from mvit_video.data.clips import ClipSpec, open_reader, train_indices, views
from mvit_video.data.decoding import VideoDecodeError
from mvit_video.data.lists import check_label_range, join_prefix
from mvit_video.settings import AugConfig, DataConfig
from mvit_video.utils.errors import UserError

logger = logging.getLogger(__name__)

_WARNED: set[str] = set()  # per process (so per worker): each bad path is logged once


def warn_bad_video(path: str, error: BaseException) -> None:
    """Note a bad video (debug level, once per path in this process). The user-facing report is the main
    process's: training logs each epoch's bad paths at its end, testing lists them in its report; logging here
    too would repeat each path once per loader worker."""
    if path not in _WARNED:
        _WARNED.add(path)
        logger.debug("skipping unreadable video: %s", error)


def item_seed(seed: int, epoch: int, index: int, retry: int = 0) -> int:
    """A 63-bit seed that depends only on (run seed, epoch, sample index, retry): not on worker or rank."""
    digest = hashlib.blake2b(struct.pack("<4q", seed, epoch, index, retry), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed python's, numpy's and torch's global RNGs (what the transforms draw from), restoring them after:
    without workers the item runs in the training process, whose own RNG stream (dropout, mixup) must not move."""
    py, npy, th = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.random.set_rng_state(th)


class VideoDataset(Dataset):
    """Videos with integer labels; `split` "train" gives augmented clips, "val"/"test" give all test views."""

    def __init__(
        self,
        paths: list[str],
        full_paths: list[str],
        labels: list[int],
        split: str,
        spec: ClipSpec,
        train_transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        num_sample: int = 1,
        max_bad_retries: int = 10,
        class_names: Optional[list[str]] = None,
        num_classes: Optional[int] = None,
        augment_on_device: bool = False,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        if split == "train" and train_transform is None:
            raise ValueError("a training dataset needs a train_transform")
        self.paths, self.full_paths, self.labels = list(paths), list(full_paths), list(labels)
        self.split, self.spec, self.train_transform = split, spec, train_transform
        if augment_on_device and not isinstance(train_transform, TrainAugment):
            raise ValueError("augment_on_device needs a TrainAugment as the train_transform")
        # True: train items carry uint8 frames + ClipParams; the loader's device side applies them (data/loader.py)
        self.augment_on_device = bool(augment_on_device)
        self.num_sample, self.max_bad_retries = int(num_sample), int(max_bad_retries)
        self.class_names = class_names
        if num_classes is None:
            num_classes = len(class_names) if class_names else max(self.labels, default=-1) + 1
        self.num_classes = int(num_classes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict:
        """`dataset[index]`, or `dataset[(seed, epoch, index)]` (the training sampler's keys): then every random
        draw of the item is a function of those three numbers alone, so any worker, rank or resumed run makes the
        same clips."""
        if isinstance(key, tuple):
            seed, epoch, index = (int(k) for k in key)
            return self._train_item(index, (seed, epoch)) if self.split == "train" else self._test_item(index)
        return self._train_item(key) if self.split == "train" else self._test_item(key)

    # ------------------------------------------------------------------ train

    def _train_clips(self, path: str) -> dict:
        with open_reader(path, self.spec) as reader:
            frames = reader.get_frames(train_indices(self.spec, reader.num_frames, reader.fps))
        # one decode, num_sample independently augmented clips (repeated augmentation)
        aug = self.train_transform
        if isinstance(aug, TrainAugment):
            frames = aug.prepare(frames)  # the per-video work (Kinetics: short side), once for the N clips
            params = [aug.draw(frames.shape[1], frames.shape[2]) for _ in range(self.num_sample)]
            if self.augment_on_device:
                return {"frames": frames, "params": params}
            return {"video": aug.apply(frames, params)}
        # any other callable: frames -> one clip [3,T,H,W] (as before TrainAugment; benchmarks pass their own)
        if self.num_sample == 1:
            return {"video": self.train_transform(frames).unsqueeze(0)}  # no stack copy
        return {"video": torch.stack([self.train_transform(frames) for _ in range(self.num_sample)])}

    def _train_item(self, index: int, seed_epoch: Optional[tuple[int, int]] = None) -> dict:
        bad: list[str] = []
        asked = index
        first_error: Optional[BaseException] = None
        for retry in range(self.max_bad_retries + 1):
            path = self.full_paths[index]
            rngs = (seeded_rngs(item_seed(*seed_epoch, asked, retry)) if seed_epoch is not None
                    else contextlib.nullcontext())
            try:
                with rngs:
                    clips = self._train_clips(path)
                return {**clips, "label": self.labels[index], "index": index, "bad_paths": bad}
            except VideoDecodeError as e:
                warn_bad_video(path, e)
                bad.append(path)
                first_error = first_error or e
                if seed_epoch is not None:  # the replacement, too, depends only on (seed, epoch, index, retry)
                    index = item_seed(*seed_epoch, asked, retry + 1) % len(self)
                else:
                    index = random.randrange(len(self))
        raise UserError(
            f"{len(bad)} videos in a row could not be decoded (data.max_bad_retries={self.max_bad_retries}); "
            f"first tried: {first_error}. Check data.path_prefix and the list with scripts/check_dataset.py"
        )

    # ------------------------------------------------------------------ val / test

    def _test_item(self, index: int) -> dict:
        path = self.full_paths[index]
        ok = True
        try:
            with open_reader(path, self.spec) as reader:
                item_views = views(reader, self.spec)  # [K*S,3,T,c,c], v = k*S + s, one decode
        except VideoDecodeError as e:
            warn_bad_video(path, e)
            s = self.spec
            item_views = torch.empty(0, 3, s.num_frames, s.test_crop_size, s.test_crop_size)
            ok = False
        return {"views": item_views, "label": self.labels[index], "index": index, "path": self.paths[index], "ok": ok}


def list_dataset(data: DataConfig, aug: AugConfig, spec: ClipSpec, split: str, *, list_path: str,
                 paths: Sequence[str], labels: Sequence[int], prefix: str, class_names: Optional[list[str]],
                 classes_file: str, augment_on_device: bool = False, **aug_options: Any) -> VideoDataset:
    """The VideoDataset of a dataset's list (`list_path`, for errors), as every builder assembles it: videos at
    `prefix`/path, labels checked against the `class_names` read from `classes_file` (when there are any), the
    training augmentation of data.* and aug.* (`aug_options`: the dataset's build_aug_spec arguments), num_sample
    clips per training item."""
    if class_names is not None:
        check_label_range(labels, len(class_names), listed=list_path, paths=paths,
                          classes=f"{classes_file} has {len(class_names)} classes", error=UserError)
    train = split == "train"
    return VideoDataset(
        paths=list(paths),
        full_paths=[join_prefix(prefix, p) for p in paths],
        labels=list(labels),
        split=split,
        spec=spec,
        train_transform=TrainAugment(build_aug_spec(data, aug, **aug_options)) if train else None,
        augment_on_device=augment_on_device and train,
        num_sample=data.num_sample if train else 1,
        max_bad_retries=data.max_bad_retries,
        class_names=class_names,
        num_classes=len(class_names) if class_names else max(labels) + 1,
    )
