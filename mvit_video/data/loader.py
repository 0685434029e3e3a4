"""DataLoaders: a resumable distributed sampler for training, exact sharding for val/test, the collates, the
training loader's device side (pinned, non-blocking copies one batch ahead; the batched augmentation), and the
workers' lifetime (`LoaderWorkers`: a `with` block that ends the worker processes started inside it)."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import math
import multiprocessing
import multiprocessing.util  # noqa: F401 -- its exit handler must be registered before ours (see _owner)
import os
import random
import signal
import threading
import time
import warnings
import weakref
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mvit_video.data.augment import BatchAugment
from mvit_video.settings import LoaderConfig
from mvit_video.utils.errors import ConfigError

__all__ = ["ResumableDistributedSampler", "ShardSampler", "train_collate", "test_collate", "worker_init_fn",
           "build_loader", "LoaderWorkers", "kill_all_workers", "stop_workers", "resolve_augment_on", "DeviceLoader",
           "STOP_SIGNALS"]

logger = logging.getLogger(__name__)


class ResumableDistributedSampler(Sampler[int]):
    """DistributedSampler semantics (permutation seeded by seed + epoch, rank r takes every world_size-th index)
    plus `set_start_index(i)`: the next iteration skips the first i indices of this rank's epoch order, so a
    run resumed mid-epoch sees exactly the rest of the interrupted epoch. The skip applies to one iteration."""

    def __init__(
        self,
        dataset_len: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        keyed: bool = False,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.dataset_len, self.num_replicas, self.rank = dataset_len, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        # keyed: yield (seed, epoch, index) so the dataset seeds each item's augmentation from them (exact resume
        # with workers: persistent workers hold a stale copy of everything but the indices they are sent)
        self.keyed = keyed
        self.epoch = 0
        self.start_index = 0
        if drop_last:  # every rank the same count: drop the tail that does not divide evenly
            self.num_samples = dataset_len // num_replicas
        else:  # pad by repeating the head (DistributedSampler's behaviour)
            self.num_samples = math.ceil(dataset_len / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of epoch `epoch`."""
        self.epoch = int(epoch)

    def set_start_index(self, index: int) -> None:
        """Skip the first `index` samples of this rank's order in the next iteration (mid-epoch resume)."""
        if index < 0:
            raise ValueError(f"start index must be >= 0, got {index}")
        # past the end (e.g. resumed with fewer processes): nothing left of this epoch
        self.start_index = min(int(index), self.num_samples)

    def epoch_indices(self) -> list[int]:
        """This rank's full order for the current epoch (before any skip)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            order = list(range(self.dataset_len))
        if self.total_size > len(order):
            order += (order * math.ceil(self.total_size / max(len(order), 1)))[: self.total_size - len(order)]
        order = order[: self.total_size]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int] | Iterator[tuple[int, int, int]]:
        start, self.start_index = self.start_index, 0
        order = self.epoch_indices()[start:]
        if self.keyed:
            return iter([(self.seed, self.epoch, i) for i in order])
        return iter(order)

    def __len__(self) -> int:
        return self.num_samples - self.start_index

    def state_dict(self) -> dict:
        """What a checkpoint needs to rebuild the order (the engine stores the consumed count itself)."""
        return {"epoch": self.epoch, "seed": self.seed, "num_replicas": self.num_replicas}


class ShardSampler(Sampler[int]):
    """Val/test sharding without padding: rank r gets indices r, r+W, r+2W, ... so every video is on one rank."""

    def __init__(self, dataset_len: int, num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.indices = list(range(rank, dataset_len, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def train_collate(items: list[dict]) -> dict:
    """Flatten num_sample into the batch: video [B*N,3,T,H,W]; label/index [B*N] (clip order: item-major).

    Items augmented on the device (frames + params) batch as `frames` uint8 [B,T,Hmax,Wmax,3] (each video
    zero-padded at the bottom/right to the batch's largest; Kinetics videos differ in aspect ratio),
    `frame_sizes` [B,2] (each video's valid H, W), `source` [B*N] (clip -> video) and `params` (B*N ClipParams):
    the frames travel once for the N clips of a video."""
    if "frames" in items[0]:
        return _frames_collate(items)
    videos = torch.cat([it["video"] for it in items])
    n = [it["video"].shape[0] for it in items]
    labels = torch.tensor([it["label"] for it, k in zip(items, n) for _ in range(k)], dtype=torch.long)
    index = torch.tensor([it["index"] for it, k in zip(items, n) for _ in range(k)], dtype=torch.long)
    bad = [p for it in items for p in it["bad_paths"]]
    return {"video": videos, "label": labels, "index": index, "bad_paths": bad}


def _frames_collate(items: list[dict]) -> dict:
    frames = [it["frames"] for it in items]
    sizes = torch.tensor([f.shape[1:3] for f in frames], dtype=torch.long)
    if all(f.shape == frames[0].shape for f in frames):
        batch = torch.stack(frames)
    else:
        t = frames[0].shape[0]
        batch = torch.zeros((len(frames), t, int(sizes[:, 0].max()), int(sizes[:, 1].max()), 3), dtype=torch.uint8)
        for u, f in enumerate(frames):
            batch[u, :, : f.shape[1], : f.shape[2]] = f
    n = [len(it["params"]) for it in items]
    return {
        "frames": batch,
        "frame_sizes": sizes,
        "source": torch.tensor([u for u, k in enumerate(n) for _ in range(k)], dtype=torch.long),
        "params": [p for it in items for p in it["params"]],
        "label": torch.tensor([it["label"] for it, k in zip(items, n) for _ in range(k)], dtype=torch.long),
        "index": torch.tensor([it["index"] for it, k in zip(items, n) for _ in range(k)], dtype=torch.long),
        "bad_paths": [p for it in items for p in it["bad_paths"]],
    }


def resolve_augment_on(setting: str, device: "torch.device | str") -> str:
    """data_loader.augment_on as "workers" or "device": auto is device on CUDA and workers on CPU, where the
    workers run beside the training step and the main process would do the same work serially (README,
    Performance: measured)."""
    if setting not in ("auto", "workers", "device"):
        raise ConfigError(f"data_loader.augment_on: expected auto, workers or device, got {setting!r}")
    if setting == "auto":
        return "device" if torch.device(device).type == "cuda" else "workers"
    return setting


class DeviceLoader:
    """The training DataLoader seen from the device: iterating yields batches whose "video" and "label" are on
    `device`, ready to use. On CUDA the next batch is copied (pinned memory, non_blocking) and augmented on a side
    stream while the current step runs; elsewhere each batch is moved and augmented when asked for. `augment`
    (a BatchAugment) applies device-side augmentation to batches that carry frames + params (train_collate).
    len(), .sampler and the other attributes are the DataLoader's."""

    def __init__(self, loader: DataLoader, device: torch.device, augment: Any = None) -> None:
        self.loader, self.device, self.augment = loader, torch.device(device), augment

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # sampler, dataset, batch_size, num_workers ...
        if name == "loader":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[dict]:
        if self.device.type == "cuda":
            return _CudaPrefetcher(iter(self.loader), self.device, self._prepare)
        return (self._prepare(batch) for batch in self.loader)

    def _prepare(self, batch: dict) -> dict:
        """Move the batch to the device (non-blocking) and augment it there when it carries frames + params."""
        out = dict(batch)
        out["label"] = batch["label"].to(self.device, non_blocking=True)
        if "frames" in batch:
            if self.augment is None:
                raise ValueError("a batch of frames + augmentation parameters needs DeviceLoader(augment=...)")
            frames = batch["frames"].to(self.device, non_blocking=True)
            # frame_sizes/source/params stay on the host: the augmentation builds its per-clip coefficients there
            out["video"] = self.augment(frames, batch["frame_sizes"], batch["source"], batch["params"])
            del out["frames"]
        else:
            out["video"] = batch["video"].to(self.device, non_blocking=True)
        return out


class _CudaPrefetcher:
    """One batch ahead on a side stream: next() hands over the batch prepared during the previous step (the
    compute stream waits for its copy and augmentation) and queues the following one."""

    def __init__(self, it: Iterator[dict], device: torch.device, prepare: Any) -> None:
        self.it, self.prepare = it, prepare
        self.stream = torch.cuda.Stream(device)
        self.ready = self._queue()

    def _queue(self) -> dict | None:
        try:
            batch = next(self.it)
        except StopIteration:
            return None
        with torch.cuda.stream(self.stream):
            return self.prepare(batch)

    def __iter__(self) -> "_CudaPrefetcher":
        return self

    def __next__(self) -> dict:
        batch = self.ready
        if batch is None:
            raise StopIteration
        current = torch.cuda.current_stream(self.stream.device)
        current.wait_stream(self.stream)
        for key in ("video", "label"):
            batch[key].record_stream(current)  # made on the side stream, used and freed on the compute stream
        self.ready = self._queue()
        return batch


def test_collate(items: list[dict]) -> dict:
    """views: list of [K*S,3,T,c,c] tensors ([0,...] when not ok); label/index LongTensor; path list; ok BoolTensor."""
    return {
        "views": [it["views"] for it in items],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "path": [it["path"] for it in items],
        "ok": torch.tensor([bool(it["ok"]) for it in items], dtype=torch.bool),
    }


def _die_with_parent() -> None:
    """Linux: the kernel SIGKILLs this worker when the main process dies (even by SIGKILL), so no orphan
    worker keeps a GPU node's cores busy. Elsewhere a no-op (torch's watchdog still ends orphans within seconds)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


# Stop signals every run catches (engine.preempt) and its workers ignore: SIGTERM (scancel, torchrun, SLURM at the
# time limit), SIGUSR1 (train.sbatch's --signal), SIGUSR2 (submitit's default preemption signal) and SIGINT (Ctrl-C).
# SLURM sends them to every process of a step, Ctrl-C to the whole foreground group.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)


def _ignore_stop_signals() -> None:
    """A worker must not die of a stop signal mid-batch: the main process decides (it finishes the step, saves, and
    ends its workers -- LoaderWorkers, on every exit path). Ignoring discards a signal that arrived while the worker
    started with them blocked (`_stop_signals_blocked`); then they are unblocked."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Block the stop signals in this thread while it starts workers. A worker inherits the mask (fork; exec under
    spawn keeps it), so a stop signal sent to the process group while the worker starts -- torch resets SIGTERM to
    its default in a worker before calling worker_init_fn -- waits there until `_ignore_stop_signals` discards it,
    instead of killing the worker. In this process such a signal waits until the block ends, then is handled."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_init_fn(worker_id: int) -> None:
    """Per-worker setup: stop signals ignored (the main process ends its workers), killed with the main process,
    one intra-op thread (workers already fill the cores) and numpy/random seeded from torch."""
    _ignore_stop_signals()
    _die_with_parent()
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32  # torch gives each worker its own base_seed + worker_id
    random.seed(seed)
    np.random.seed(seed)


def _exit_when_released(release: Any) -> None:
    """Worker thread: wait for the owner's release, then end this worker with status 0 at once, whatever its main
    thread is doing (a decode in C included). Status 0, not a signal: torch's SIGCHLD handler in the main process
    raises for a registered worker that died by a signal or a non-zero status, and the iterator may still be
    registered (kept alive by a traceback)."""
    release.acquire()
    os._exit(0)


class _WorkerInit:
    """The loader's worker_init_fn: `worker_init_fn`, then a thread that ends the worker when its owner
    (LoaderWorkers) releases it. `release` is set just before the workers start (a pickled copy travels with each
    worker under spawn/forkserver, an inherited one under fork)."""

    def __init__(self) -> None:
        self.release: Any = None  # the owner's multiprocessing Semaphore

    def __call__(self, worker_id: int) -> None:
        worker_init_fn(worker_id)
        if self.release is not None:
            threading.Thread(target=_exit_when_released, args=(self.release,), name="mvit-worker-stop",
                             daemon=True).start()


# Owners of worker processes, innermost last (`with LoaderWorkers():` pushes one); workers that start outside every
# `with` belong to the process-wide owner, made (and ended at interpreter exit) when the first such worker starts.
_ACTIVE: list["LoaderWorkers"] = []
_PROCESS_OWNER: "LoaderWorkers | None" = None
_exit_hook = False  # _stop_all registered with atexit


class LoaderWorkers:
    """Owns the data-loader worker processes that start while it is the innermost `with` block, and ends them when
    the block is left by any path: return, exception, a stop signal's SystemExit or KeyboardInterrupt.

    Needed because the workers ignore stop signals (worker_init_fn) and an exception's traceback keeps its loader
    iterators -- and so their workers -- alive until interpreter exit, where multiprocessing's exit handler
    SIGTERMs them (ignored) and then waits for them forever.

    Public API: the multiprocessing handles of the processes our loaders start, and our worker_init_fn. Each worker
    waits on this owner's semaphore in a thread and exits with status 0 when released; a worker still alive
    `grace_s` seconds later (its thread held off, e.g. by a C call holding the GIL) is SIGKILLed. The one exception:
    an iterator with a pin-memory thread (CUDA) is first shut down by torch itself (`_shutdown_pinned` says why)."""

    def __init__(self, grace_s: float = 5.0) -> None:
        self.grace_s = grace_s
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._release: Any = None  # multiprocessing Semaphore, made in the context of the first loader
        self._pinned: "weakref.WeakSet[Any]" = weakref.WeakSet()  # iterators with a pin-memory thread (CUDA)

    def __enter__(self) -> "LoaderWorkers":
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self.stop()

    @property
    def processes(self) -> list[multiprocessing.process.BaseProcess]:
        """The worker processes owned and still running."""
        return [p for p in self._procs if _running(p)]

    def _semaphore(self, context: Any) -> Any:
        if self._release is None:
            self._release = context.Semaphore(0)
        return self._release

    def _adopt(self, procs: list[multiprocessing.process.BaseProcess]) -> None:
        self._procs = self.processes + procs  # forget the ones that ended (a finished non-persistent epoch)

    def stop(self) -> None:
        """End the owned workers now (main thread): release them, wait up to grace_s, SIGKILL the rest, reap."""
        for iterator in list(self._pinned):
            _shutdown_pinned(iterator)
        self._pinned = weakref.WeakSet()
        alive = self.processes
        try:
            for _ in alive:
                self._release.release()
            deadline = time.monotonic() + self.grace_s
            for proc in alive:
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
        finally:  # also when a second Ctrl-C interrupts the wait: no worker outlives the block
            left = [p for p in alive if _running(p)]
            if left:
                logger.warning("%d data-loader worker(s) did not stop within %g s: killed", len(left), self.grace_s)
                try:
                    _kill(left)
                except RuntimeError as e:  # torch's SIGCHLD check, when their iterator is still registered
                    logger.debug("after killing data-loader workers: %s", e)
            self._procs = []

    def kill(self) -> None:
        """SIGKILL the owned workers and reap them: safe from any thread (no queue, no lock of the loader's), at most
        2 s. For a hard exit, where the main thread may be stuck in a long op."""
        _kill(list(self._procs))


def _torch_minor() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def _shutdown_pinned(iterator: Any) -> bool:
    """End a live multi-worker iterator that has a pin-memory thread (CUDA) in torch's own order; True when done.

    The one use of private torch API in the loader, because no public call can do it: DataLoader has no close(),
    and its last reference cannot be dropped while an exception's traceback holds it. Ending such workers ourselves
    is not safe: torch's pin-memory thread keeps reading their result pipe, and a worker that exits in the middle
    of writing a batch leaves a partial message on which that thread -- and torch's shutdown, which joins it without
    a timeout, at the latest at interpreter exit -- would block forever. `_shutdown_workers` stops that thread
    first, then lets the workers exit between messages. Its code was read in torch 2.14.1 (the method and that order
    are older than 2.4); on a torch outside 2.4-2.14 (pyproject.toml's range), or without the method, False: the
    caller ends the workers itself (released, then killed)."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if not (2, 4) <= _torch_minor() <= (2, 14) or not callable(shutdown):
        return False
    try:
        shutdown()
    except Exception as e:  # noqa: BLE001 -- on the way out; the caller still ends whatever is left
        logger.debug("data-loader shutdown failed: %s", e)
        return False
    return True


def _running(proc: multiprocessing.process.BaseProcess) -> bool:
    try:
        return proc.is_alive()
    except (ValueError, AssertionError):  # closed, or not our child (a forked copy of this module)
        return False


def _kill(procs: list[multiprocessing.process.BaseProcess]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except (OSError, ValueError, AttributeError):  # already reaped / closed
            pass
    deadline = time.monotonic() + 2.0
    for proc in procs:  # reap them (a killed child stays a zombie until its parent waits)
        try:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        except (OSError, ValueError, AssertionError):
            pass


def _owner() -> LoaderWorkers:
    """The owner of workers that start now: the innermost `with LoaderWorkers()`, else the process-wide one."""
    global _PROCESS_OWNER, _exit_hook
    if not _exit_hook:
        # Registered when the first workers start, not at import, and after multiprocessing.util's exit handler
        # (imported above): atexit runs last-registered first, so the workers of the process-wide owner (and of a
        # block never left, e.g. in a suspended generator) end before that handler would SIGTERM them (ignored)
        # and wait for them forever.
        atexit.register(_stop_all)
        _exit_hook = True
    if _ACTIVE:
        return _ACTIVE[-1]
    if _PROCESS_OWNER is None:
        _PROCESS_OWNER = LoaderWorkers()
    return _PROCESS_OWNER


def _owners() -> list[LoaderWorkers]:
    return [*reversed(_ACTIVE), *([_PROCESS_OWNER] if _PROCESS_OWNER is not None else [])]


def _stop_all() -> None:
    for owner in _owners():
        owner.stop()


def kill_all_workers() -> None:
    """SIGKILL and reap every data-loader worker our loaders started in this process (any thread; a hard exit)."""
    for owner in _owners():
        owner.kill()


def stop_workers() -> None:
    """Deprecated: end every data-loader worker our loaders started in this process. Hold `LoaderWorkers()` instead."""
    warnings.warn("mvit_video.data.loader.stop_workers is deprecated and will be removed in the next release; hold "
                  "`with mvit_video.data.loader.LoaderWorkers():` around the code that iterates the loaders",
                  DeprecationWarning, stacklevel=2)
    _stop_all()


class _OwnedLoader(DataLoader):
    """A DataLoader whose worker processes belong to the LoaderWorkers active when they start. Only public API:
    `__iter__` and multiprocessing's list of this process's children, before and after the workers start."""

    _workers: tuple[multiprocessing.process.BaseProcess, ...] = ()  # the persistent workers started last

    def __iter__(self) -> Any:
        init = self.worker_init_fn
        if self.num_workers == 0 or not isinstance(init, _WorkerInit):
            return super().__iter__()
        if self.persistent_workers and self._workers and not any(_running(p) for p in self._workers):
            # torch would reuse its iterator and, after a 5 s timeout, report the workers as crashed
            raise RuntimeError("this DataLoader's persistent workers were ended when the `with LoaderWorkers()` block "
                               "they started in was left; build a new loader")
        owner = _owner()
        init.release = owner._semaphore(self.multiprocessing_context or multiprocessing.get_context())
        before = set(multiprocessing.active_children())
        try:
            with _stop_signals_blocked():
                iterator = super().__iter__()  # starts the workers (first time, or each time w/o persistent_workers)
            if self.pin_memory:
                owner._pinned.add(iterator)
            return iterator
        finally:  # also when starting failed half-way: the ones started are ours to end
            started = [p for p in multiprocessing.active_children() if p not in before and p.daemon]
            owner._adopt(started)
            if started and self.persistent_workers:
                self._workers = tuple(started)


_warned_workers = False


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, e.g. a SLURM allocation), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _warn_oversubscribed(workers: int) -> None:
    """Warn once per process when the loader asks for more worker processes than there are cores."""
    global _warned_workers
    cores = available_cores()
    if workers > cores and not _warned_workers:
        _warned_workers = True
        logger.warning("data_loader.num_workers=%d exceeds the %d CPU cores available: the workers compete for "
                       "them and slow each other down (set data_loader.num_workers=%d or fewer)", workers, cores,
                       cores)


def build_loader(dataset: Dataset, split: str, loader: LoaderConfig, *, batch_size: int, seed: int,
                 world_size: int = 1, rank: int = 0, device: "torch.device | str | None" = None) -> Any:
    """DataLoader of `dataset` for `split` with the data_loader.* settings: `batch_size` is the global batch
    (train.batch_size / test.batch_size; per process = batch_size // world_size), `seed` the run's seed (the
    training order and the workers' base seeds). Train shuffles (resumably) and drops the tail; val/test shard
    without padding. With `device`, the train loader is a DeviceLoader: batches arrive on the device, augmented
    there when the dataset leaves it to the device (augment_on_device)."""
    workers = loader.num_workers
    if workers < 0:
        raise ConfigError(f"data_loader.num_workers: must be >= 0, got {workers}")
    _warn_oversubscribed(workers)
    common = dict(
        num_workers=workers,
        pin_memory=loader.pin_memory and torch.cuda.is_available(),
        persistent_workers=loader.persistent_workers and workers > 0,
        worker_init_fn=_WorkerInit() if workers > 0 else None,
        # Its own generator for the workers' base seed: creating an iterator must not draw from the global RNG,
        # or a resumed run (new workers) would consume different numbers than an unbroken one (mixup, drop path).
        generator=torch.Generator().manual_seed(seed),
    )
    if split == "train":
        batch = batch_size // world_size
        if batch < 1:
            raise ConfigError(f"train.batch_size: {batch_size} is smaller than the {world_size} processes")
        sampler = ResumableDistributedSampler(
            len(dataset), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True, keyed=True,
        )
        train = _OwnedLoader(dataset, batch_size=batch, sampler=sampler, collate_fn=train_collate, drop_last=True,
                               **common)
        on_device = bool(getattr(dataset, "augment_on_device", False))
        if device is None:
            if on_device:
                raise ValueError("a dataset augmented on the device needs build_loader(..., device=)")
            return train
        return DeviceLoader(train, torch.device(device),
                            BatchAugment(dataset.train_transform.spec) if on_device else None)
    batch = max(1, batch_size // world_size)
    sampler = ShardSampler(len(dataset), num_replicas=world_size, rank=rank)
    return _OwnedLoader(dataset, batch_size=batch, sampler=sampler, collate_fn=test_collate, drop_last=False,
                          **common)
