"""torch.compile in training (train.compile), no recompilation per batch or epoch, and the throughput figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mvit_video.engine import throughput
from mvit_video.eval.multiview import mean_view_probs
from mvit_video.engine.trainer import compile_enabled as _compile_enabled
from mvit_video.train import train


def test_compile_auto_means_cuda_only() -> None:
    assert _compile_enabled("auto", torch.device("cuda", 0))
    assert not _compile_enabled("auto", torch.device("cpu"))
    assert _compile_enabled(True, torch.device("cpu")) and not _compile_enabled(False, torch.device("cuda", 0))


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@pytest.mark.slow
def test_compiled_training_with_ema_checkpointing_val_and_test_compiles_once_per_mode(tiny, monkeypatch,
                                                                                         caplog) -> None:
    """Every graph (train step, val/test forward) is compiled in the first epoch; later epochs, the val/test
    chunks (2 views per batch, 3 per chunk: partial chunks) and the final test add none.

    The compiler backend is aot_eager: dynamo's tracing, guards and AOT autograd (what decides recompilation)
    run as in training, without inductor's code generation (tests/models/test_mvit.py compiles with inductor).
    """
    import torch._dynamo

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend="aot_eager", **kw))
    torch._dynamo.reset()
    graphs_after_epoch: dict[int, int] = {}

    def on_step(epoch: int, batch: int) -> None:  # epoch counts from 0
        graphs_after_epoch[epoch + 1] = _unique_graphs()

    cfg = tiny("compiled", "train.compile=true", "solver.max_epoch=3", "train.ema.enable=true",
               "model.act_checkpoint=true", "test.enable=true", "test.max_views_per_forward=3",
               "test.num_ensemble_views=1")
    with caplog.at_level("INFO"):
        result = train(cfg, on_step=on_step)
    # Epoch 1 compiled the train step, its val compiled the eval forward (fixed chunk); epochs 2 and 3 (after
    # a val each) and the test compiled nothing more.
    assert graphs_after_epoch[1] >= 1
    final = _unique_graphs()
    assert graphs_after_epoch[2] == graphs_after_epoch[3] == final, (graphs_after_epoch, final)
    assert "torch.compile: first step took" in caplog.text
    assert result["test"]["videos"] == 4
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_eval_pads_chunks_to_one_shape_and_matches_eager() -> None:
    """A compiled model sees every chunk at max_views_per_forward views; the scores equal the unpadded ones."""
    shapes: list[tuple[int, ...]] = []

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shapes.append(tuple(x.shape))
            return self.fc(x.mean(dim=(2, 3, 4)))

    net = Net().eval()
    views = [torch.randn(3, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)]  # 5 views, chunks of 4 -> 4 + 1
    eager = mean_view_probs(net, views, "cpu", max_views_per_forward=4)
    assert shapes == [(4, 3, 2, 4, 4), (1, 3, 2, 4, 4)]
    shapes.clear()
    compiled = torch.compile(net, backend="eager")
    padded = mean_view_probs(compiled, views, "cpu", max_views_per_forward=4)
    assert shapes == [(4, 3, 2, 4, 4), (4, 3, 2, 4, 4)]
    for a, b in zip(eager, padded):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_train_metrics_carry_throughput(tiny) -> None:
    cfg = tiny("tput", "solver.max_epoch=1")
    train(cfg)
    line = json.loads((Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()[0])
    assert line["split"] == "train"
    assert line["clips_per_s"] > 0 and line["clips_per_s_per_gpu"] == pytest.approx(line["clips_per_s"])
    assert 0.0 <= line["data_wait_frac"] <= 1.0
    assert line["mfu"] is None  # CPU: no peak to compare with
    assert "waiting for data" in (Path(cfg.output_dir) / "train.log").read_text()


def test_mfu_arithmetic() -> None:
    # MViTv2-B 32x3: 225.2 GFLOPs (multiply-adds) forward -> 1351 GFLOP per training clip; 60 clips/s on a
    # 989 TFLOP/s GPU is 8.2% MFU.
    per_clip = throughput.train_flops_per_clip(225.2, act_checkpoint=False)
    assert per_clip == pytest.approx(225.2e9 * 6)
    assert throughput.mfu(60.0, per_clip, 989e12) == pytest.approx(0.0820, abs=1e-4)
    assert throughput.train_flops_per_clip(10.0, act_checkpoint=True) == pytest.approx(80e9)
    assert throughput.mfu(1.0, None, 1e12) is None
    assert throughput.peak_flops(torch.device("cpu")) is None
    assert throughput.peak_flops(torch.device("cpu"), override_tflops=100) == 100e12
    names = dict(throughput.PEAK_BF16_TFLOPS)
    assert names["H200"] == names["H100"] == 989.0


def _ddp_worker(rank: int, world: int, port: int, cfg, compiled: bool) -> None:
    import os

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    if compiled:  # aot_eager: dynamo + AOT autograd as in training, no inductor codegen (see above)
        real_compile = torch.compile
        torch.compile = lambda model, **kw: real_compile(model, backend="aot_eager", **kw)
    train(cfg)


@pytest.mark.slow
def test_compiled_ddp_training_matches_eager_ddp(tiny) -> None:
    """train.compile=true under 2-process DDP (gloo): trains, and ends at the eager run's weights."""
    import socket

    import torch.multiprocessing as mp

    from mvit_video import checkpoint as ck

    weights = {}
    for compiled in (False, True):
        cfg = tiny(f"ddp_compiled_{compiled}", "solver.max_epoch=1", "solver.warmup_epochs=0",
                   f"train.compile={str(compiled).lower()}", "model.dropout_rate=0.0", "mvit.droppath_rate=0.0")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_ddp_worker, args=(2, port, cfg, compiled), nprocs=2, join=True)
        weights[compiled] = ck.load(ck.epoch_checkpoint_path(Path(cfg.output_dir), 1))["model"]
    for name, value in weights[False].items():
        torch.testing.assert_close(weights[True][name], value, atol=1e-5, rtol=1e-4, msg=name)
