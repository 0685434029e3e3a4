"""Two CPU processes (gloo) train the tiny model for a few steps; rank 0 writes; the checkpoint loads."""

from __future__ import annotations

import pytest

import json
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg) -> None:
    import os

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from mvit_video.train import train

    train(cfg)


@pytest.mark.slow
def test_two_process_gloo_training(tiny) -> None:
    cfg = tiny("ddp", "solver.max_epoch=1", "solver.warmup_epochs=0")
    mp.spawn(_worker, args=(2, _free_port(), cfg), nprocs=2, join=True)
    out = Path(cfg.output_dir)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    # Written once (rank 0), with metrics reduced over both ranks: 4 clips in total per epoch.
    assert [m["split"] for m in lines] == ["train", "val"]
    saved = torch.load(out / "checkpoints" / "checkpoint_epoch_00001.pyth", weights_only=True)
    assert saved["sampler"]["world_size"] == 2 and len(saved["rng"]) == 2
    assert saved["scheduler"]["step"] == 2  # 4 videos / global batch 2 = 2 steps
    from mvit_video.checkpoint import load_model

    model = load_model(out / "checkpoints" / "checkpoint_epoch_00001.pyth")
    assert not any(k.startswith("module.") for k in model.state_dict())
    assert model(torch.randn(2, 3, 4, 32, 32)).shape == (2, 2)
