"""Overrides for tiny training runs on the shared fixture videos (used by tests/engine and tests/test_cli.py)."""

from __future__ import annotations

from pathlib import Path


def tiny_overrides(list_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    """Overrides for a 2-block, width-16 MViTv2 on 4-frame 32 px clips of the fixture videos, no workers."""
    return [
        "data.dataset=kinetics",
        f"data.path_to_data_dir={list_dir}",
        "data.num_frames=4",
        "data.sampling_rate=2",
        "data.train_crop_size=32",
        "data.test_crop_size=32",
        "data.train_jitter_scales=[32,40]",
        "data.train_jitter_scales_relative=[0.5,1.0]",
        "data.decoder=pyav",
        "data_loader.num_workers=0",
        "model.num_classes=2",
        "model.dropout_rate=0.5",  # dropout on: exact resume must restore the RNG too
        "mvit.depths=null",  # explicit per-block lists below
        "mvit.depth=2",
        "mvit.embed_dim=16",
        "mvit.pool_q_stride=[[0,1,1,1],[1,1,2,2]]",
        "mvit.pool_kv_stride_adaptive=[1,2,2]",
        "mvit.dim_mul=[[1,2.0]]",
        "mvit.head_mul=[[1,2.0]]",
        "mvit.droppath_rate=0.1",
        "train.batch_size=2",
        "train.eval_period=1",
        "train.checkpoint_period=1",
        "test.batch_size=2",
        "test.num_ensemble_views=1",
        "test.num_spatial_crops=1",
        "test.enable=false",
        "solver.max_epoch=2",
        "solver.warmup_epochs=0.5",
        "solver.base_lr=1e-3",
        "log_period=1",
        f"output_dir={output_dir}",
        *extra,
    ]
