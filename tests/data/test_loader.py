"""Samplers (sharding, epochs, mid-epoch resume) and loaders (batch shapes, num_sample collate, workers)."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from tiny import kinetics_cfg
from torch.utils.data import Dataset
from torch.utils.data._utils import signal_handling as worker_signal_handling

from mvit_video.data import build_dataset, build_loader
from mvit_video.data.loader import ResumableDistributedSampler, ShardSampler
from mvit_video.engine.preempt import PreemptionHandler
from mvit_video.utils.errors import ConfigError


def test_two_ranks_cover_every_index_once():
    for n in (10, 11):
        ranks = [list(ResumableDistributedSampler(n, 2, r, seed=3)) for r in range(2)]
        assert len(ranks[0]) == len(ranks[1]) == n // 2  # drop_last: same count on every rank
        assert not set(ranks[0]) & set(ranks[1])
        assert len(set(ranks[0]) | set(ranks[1])) == n - n % 2
    padded = [list(ResumableDistributedSampler(11, 2, r, drop_last=False)) for r in range(2)]
    assert len(padded[0]) == len(padded[1]) == 6 and set(padded[0]) | set(padded[1]) == set(range(11))


def test_epochs_shuffle_deterministically():
    s = ResumableDistributedSampler(50, 1, 0, seed=7)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(e0) == sorted(e1) == list(range(50)) and e0 != e1
    s.set_epoch(0)
    assert list(s) == e0
    assert list(ResumableDistributedSampler(50, 1, 0, seed=8)) != e0


def test_resume_skips_exactly_the_consumed_prefix():
    full = ResumableDistributedSampler(40, 2, 1, seed=0)
    full.set_epoch(3)
    order = list(full)
    resumed = ResumableDistributedSampler(40, 2, 1, seed=0)
    resumed.set_epoch(3)
    resumed.set_start_index(7)
    assert len(resumed) == 13
    assert list(resumed) == order[7:]
    assert len(resumed) == 20 and list(resumed) == order  # the skip applies to one pass only
    resumed.set_start_index(25)  # past the end: the epoch is over
    assert len(resumed) == 0 and list(resumed) == []
    with pytest.raises(ValueError):
        resumed.set_start_index(-1)


def test_test_sharding_has_no_duplicates():
    for n, world in ((11, 3), (2, 4), (8, 2)):
        shards = [list(ShardSampler(n, world, r)) for r in range(world)]
        flat = [i for s in shards for i in s]
        assert sorted(flat) == list(range(n))


def _cfg(list_dir, **over):
    return kinetics_cfg(list_dir, **over)


def _loader(cfg, split, dataset, world_size=1, rank=0):
    """build_loader as training and evaluate call it: the global batch of the split."""
    batch = cfg.train.batch_size if split == "train" else cfg.test.batch_size
    return build_loader(dataset, split, cfg.data_loader, batch_size=batch, seed=cfg.seed, world_size=world_size,
                        rank=rank)


def test_train_loader_flattens_num_sample(kinetics_list_dir):
    cfg = _cfg(kinetics_list_dir)
    ds = build_dataset(cfg, "train")
    loader = _loader(cfg, "train", ds, world_size=2, rank=0)  # 2 videos per process
    batches = list(loader)
    assert len(batches) == 1
    b = batches[0]
    assert b["video"].shape == (4, 3, 4, 32, 32)
    assert b["label"].dtype == torch.long and b["label"].shape == (4,)
    assert b["label"][0] == b["label"][1] and b["index"][0] == b["index"][1]  # clips of one video are adjacent
    assert b["bad_paths"] == []
    assert isinstance(loader.sampler, ResumableDistributedSampler)
    with pytest.raises(ConfigError, match="train.batch_size"):
        _loader(cfg, "train", ds, world_size=8, rank=0)


@pytest.mark.slow
def test_val_loader_with_workers(kinetics_list_dir):
    cfg = _cfg(kinetics_list_dir, **{"data_loader.num_workers": 1})
    ds = build_dataset(cfg, "val")
    seen = []
    for rank in range(2):
        loader = _loader(cfg, "val", ds, world_size=2, rank=rank)
        assert loader.persistent_workers and loader.batch_size == 1
        for b in loader:
            assert isinstance(b["views"], list) and b["views"][0].shape == (2, 3, 4, 32, 32)
            assert b["ok"].dtype == torch.bool and b["ok"].all()
            seen += b["index"].tolist()
    assert sorted(seen) == list(range(len(ds)))


class _WorkerSignals(Dataset):
    """Items: how the worker that loads them handles SIGTERM, SIGUSR1 and SIGINT."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)]
        return {"views": torch.zeros(0), "label": 0, "index": index, "path": str(handlers), "ok": True}


def test_workers_ignore_stop_signals(kinetics_list_dir):
    """SLURM signals every process of a job step and Ctrl-C the foreground group: the loader's own workers ignore
    those signals (the main process finishes its step and ends them), whoever builds the loader."""
    cfg = _cfg(kinetics_list_dir, **{"data_loader.num_workers": 1, "data_loader.persistent_workers": False})
    loader = _loader(cfg, "test", _WorkerSignals())
    paths = [p for batch in loader for p in batch["path"]]
    assert paths == [str([signal.SIG_IGN] * 3)] * 2



@pytest.mark.parametrize("preemption_handler", [False, True], ids=["bare", "as-in-training"])
def test_a_stop_signal_while_a_worker_starts_does_not_kill_it(kinetics_list_dir, monkeypatch, preemption_handler):
    """SLURM's SIGTERM to the process group can reach a worker while it starts (each epoch's new workers without
    persistent_workers), after torch has reset its SIGTERM handler and before worker_init_fn ignores stop signals:
    the worker survives and delivers its batches. The signal is sent at exactly that point (inside torch's worker
    set-up, which a forked worker inherits), with and without training's stop-signal handler installed."""
    torch_setup = worker_signal_handling._set_worker_signal_handlers

    def set_up_then_get_sigterm(*args):
        torch_setup(*args)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(worker_signal_handling, "_set_worker_signal_handlers", set_up_then_get_sigterm)
    cfg = _cfg(kinetics_list_dir, **{"data_loader.num_workers": 1, "data_loader.persistent_workers": False})
    loader = _loader(cfg, "test", _WorkerSignals())
    handler = PreemptionHandler().install() if preemption_handler else None
    try:
        paths = [p for batch in loader for p in batch["path"]]
    finally:
        if handler is not None:
            handler.restore()
    assert paths == [str([signal.SIG_IGN] * 3)] * 2
    assert handler is None or handler.signum is None  # the workers' signals do not reach the main process
