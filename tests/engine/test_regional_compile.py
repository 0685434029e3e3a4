"""Regional compilation (train.compile_mode=regional, engine/compile.py) and the compile cache kept beside the
checkpoints. The compiler backend is aot_eager where only Dynamo's graphs and guards matter (what decides
recompilation); the cache round trip needs inductor (its artifacts) and runs in two fresh processes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_config

from mvit_video.engine import compile as comp
from mvit_video.eval.multiview import is_compiled, mean_view_outputs
from mvit_video.models import build_model

ROOT = Path(__file__).resolve().parents[2]


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _stage_model(drop_path: float = 0.2):
    """5 blocks: 3 at 8x8 tokens (the first without drop path), a pooling block, one more at 4x4 -> 4 distinct
    block shapes, and a drop-path rate that differs in every block (linear in depth)."""
    config = tiny_config(num_frames=4, num_classes=5, crop_size=32, depths=None, depth=5,
                         pool_q_stride=[[3, 1, 2, 2]], dim_mul=[[3, 2.0]], head_mul=[[3, 2.0]],
                         droppath_rate=drop_path)
    torch.manual_seed(0)
    return build_model(config)


@pytest.mark.slow
def test_blocks_of_one_shape_share_one_graph_and_nothing_recompiles(caplog) -> None:
    """One graph per distinct block shape in training and one more per shape in eval; further train steps, eval
    chunks (padded to one shape), a second model (a resumed run's) add none, and no recompile is logged.

    Run in a fresh interpreter: after the in-process whole-model compiles of test_compile_throughput.py, the second
    train step here recompiled every block (not understood yet; alone, and in a fresh process, it does not)."""
    if os.environ.get("MVIT_FRESH_DYNAMO") != "1":
        name = "test_blocks_of_one_shape_share_one_graph_and_nothing_recompiles"
        inner = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{name}"],
                               env={**os.environ, "MVIT_FRESH_DYNAMO": "1"}, cwd=ROOT, capture_output=True, text=True,
                               timeout=600)
        assert inner.returncode == 0 and "1 passed" in inner.stdout, inner.stdout[-3000:]
        return
    torch._dynamo.reset()
    model = _stage_model()
    rates = [float(b.drop_prob) if b.drop_prob is not None else 0.0 for b in model.blocks]
    assert len(set(rates)) == 5  # every block has its own rate: a float attribute would compile each anew
    shapes = comp.distinct_block_shapes(model)
    assert shapes == 4
    forward = comp.compile_model(model, "regional", backend="aot_eager")
    assert is_compiled(forward) and forward.config is model.config
    x = torch.randn(2, 3, 4, 32, 32)
    torch._logging.set_logs(recompiles=True)
    try:
        with caplog.at_level(logging.DEBUG, logger="torch._dynamo"):
            model.train()
            forward(x).sum().backward()
            after_train = _graphs()
            for _ in range(2):
                forward(torch.randn(2, 3, 4, 32, 32)).sum().backward()
            assert _graphs() == after_train == shapes
            model.eval()
            views = [torch.randn(3, 3, 4, 32, 32), torch.randn(2, 3, 4, 32, 32)]  # chunks of 2: 2+2+1 (padded)
            with torch.no_grad():
                mean_view_outputs(forward, views, "cpu", max_views_per_forward=2)
            after_eval = _graphs()
            assert after_eval == 2 * shapes
            resumed = _stage_model()  # a resumed run's network: new modules, the same code and shapes
            forward2 = comp.compile_model(resumed, "regional", backend="aot_eager")
            resumed.train()
            forward2(x).sum().backward()
            resumed.eval()
            with torch.no_grad():
                mean_view_outputs(forward2, views, "cpu", max_views_per_forward=2)
            assert _graphs() == after_eval
    finally:
        torch._logging.set_logs()
    # the first train and eval call of each shape compile; nothing after is a *re*compile of a seen input
    recompiles = [r.getMessage() for r in caplog.records if "Recompiling" in r.getMessage()]
    assert len(recompiles) == 2 * shapes - 1, recompiles
    torch._dynamo.reset()


@pytest.mark.slow
def test_regional_matches_eager_logits_and_grads() -> None:
    """Compiled blocks (with drop path drawing the same random mask) give eager's logits and gradients."""
    _assert_compiled_matches_eager("regional")


def test_drop_path_rate_is_a_tensor_outside_the_state_dict() -> None:
    model = _stage_model()
    assert model.blocks[0].drop_prob is None  # rate 0: no drop path at all
    assert float(model.blocks[-1].drop_prob) == pytest.approx(0.2)
    assert not any("drop_prob" in k for k in model.state_dict())


def test_recompile_limit_is_raised_never_lowered() -> None:
    import torch._dynamo.config as dc

    name = "recompile_limit" if hasattr(dc, "recompile_limit") else "cache_size_limit"
    before = getattr(dc, name)
    try:
        comp.set_recompile_limit(before + 5)
        assert getattr(dc, name) == before + 5
        comp.set_recompile_limit(1)
        assert getattr(dc, name) == before + 5
    finally:
        setattr(dc, name, before)


def test_compile_mode_is_a_config_key(tiny) -> None:
    from mvit_video.config import build_config
    from mvit_video.utils.errors import ConfigError

    assert build_config(tiny("mode")).train.compile_mode == "full"  # until a GPU measures regional
    assert build_config(tiny("mode", "train.compile_mode=regional")).train.compile_mode == "regional"
    assert build_config(tiny("mode", "train.compile_mode=full")).train.compile_mode == "full"
    with pytest.raises(ConfigError, match="compile_mode"):
        build_config(tiny("mode", "train.compile_mode=blocks"))
    assert build_config(tiny("mode", "train.compile_mode=nested")).train.compile_mode == "nested"


def test_cache_from_another_torch_or_device_is_ignored_with_one_line(tmp_path, caplog) -> None:
    cpu = torch.device("cpu")
    folder = tmp_path / "checkpoints" / comp.CACHE_DIR
    folder.mkdir(parents=True)
    assert not comp.load_cache_artifacts(tmp_path / "nowhere", cpu)  # no cache: silent
    (folder / "torch1.0-NVIDIA_H100.bin").write_bytes(b'{"torch": "1.0"}\nxx')
    with caplog.at_level(logging.INFO, logger="mvit_video.engine.compile"):
        assert not comp.load_cache_artifacts(tmp_path, cpu)
    assert len(caplog.records) == 1 and "another torch or device" in caplog.text
    caplog.clear()
    # this key's file name, but written by other model code (or a torch whose name matches): header mismatch
    header = dict(comp._header(cpu), code="0" * 16)
    comp.cache_path(tmp_path, cpu).write_bytes(json.dumps(header).encode() + b"\nxx")
    with caplog.at_level(logging.INFO, logger="mvit_video.engine.compile"):
        assert not comp.load_cache_artifacts(tmp_path, cpu)
    assert len(caplog.records) == 1 and "ignored" in caplog.text
    caplog.clear()
    comp.cache_path(tmp_path, cpu).write_bytes(json.dumps(comp._header(cpu)).encode() + b"\nnot artifacts")
    with caplog.at_level(logging.INFO, logger="mvit_video.engine.compile"):
        assert not comp.load_cache_artifacts(tmp_path, cpu)  # corrupt: one line, never an error
    assert len(caplog.records) == 1 and "could not be loaded" in caplog.text


_CHILD = r"""
import json, sys, torch
sys.path.insert(0, "tests")
from tiny import tiny_config
from mvit_video.engine import compile as comp
from mvit_video.models import build_model
from torch._dynamo.utils import counters
out = sys.argv[1]
loaded = comp.load_cache_artifacts(out, torch.device("cpu"))
torch.manual_seed(0)
model = build_model(tiny_config(num_frames=4, num_classes=5, crop_size=32, depths=None, depth=1,
                                pool_q_stride=[], dim_mul=[], head_mul=[])).train()  # one block: one shape
comp.compile_model(model, "regional")(torch.randn(1, 3, 4, 32, 32)).sum().backward()
saved = comp.save_cache_artifacts(out, torch.device("cpu"))
print(json.dumps({"loaded": loaded, "saved": saved is not None, "inductor": dict(counters["inductor"]),
                  "aot": dict(counters["aot_autograd"])}))
"""


@pytest.mark.slow
def test_cache_artifacts_let_a_restarted_process_skip_code_generation(tmp_path) -> None:
    """Process 1 compiles (inductor) and saves; process 2, without Inductor's FX-graph and AOTAutograd caches of its
    own, loads the file and compiles the same blocks from it: Inductor's FX graph cache hits, nothing misses.
    Process 2 gets process 1's built C++ kernels: on the CPU they are not in the artifacts (on CUDA the Triton kernels
    are), and rebuilding them with the C++ compiler would only cost the test 15 s."""
    runs = []
    for i in range(2):
        if i == 1:
            shutil.copytree(tmp_path / "inductor0", tmp_path / "inductor1",
                            ignore=shutil.ignore_patterns("fxgraph", "aotautograd", "locks"))
        env = dict(os.environ, PYTHONPATH=str(ROOT), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / f"inductor{i}"),
                   OMP_NUM_THREADS="1")
        done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "run")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert not first["loaded"] and first["saved"] and first["inductor"].get("fxgraph_cache_miss", 0) > 0
    assert second["loaded"]
    assert second["inductor"].get("fxgraph_cache_hit", 0) > 0, second
    assert second["inductor"].get("fxgraph_cache_miss", 0) == 0, second


@pytest.mark.slow
def test_resumed_compiled_run_compiles_nothing_new(tiny, monkeypatch) -> None:
    """train.compile=true (regional): a run that resumes (same process, the next epoch) reuses every graph of the
    first: train step and val forward of each block shape."""
    from mvit_video.train import train

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend="aot_eager", **kw))
    torch._dynamo.reset()
    first = tiny("resume", "train.compile=true", "train.compile_mode=regional", "solver.max_epoch=1")
    train(first)
    graphs = _graphs()
    assert graphs >= 2  # train and eval graphs of at least one block shape
    train(tiny("resume", "train.compile=true", "train.compile_mode=regional", "solver.max_epoch=2"))  # resumes epoch 1
    assert _graphs() == graphs
    lines = [json.loads(x) for x in (Path(first.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines if m["split"] == "train"] == [1, 2]
    torch._dynamo.reset()


@pytest.mark.slow
def test_nested_mode_matches_eager_logits_and_grads() -> None:
    """train.compile_mode=nested (one graph, blocks as nested compile regions) gives eager's logits and gradients."""
    if not hasattr(torch.compiler, "nested_compile_region"):
        pytest.skip(f"torch {torch.__version__} has no torch.compiler.nested_compile_region")
    _assert_compiled_matches_eager("nested")


def _assert_compiled_matches_eager(mode: str) -> None:
    """The stage model compiled in `mode` (drop path drawing the same random mask) gives eager's logits and
    gradients."""
    torch._dynamo.reset()
    eager, compiled = _stage_model(), _stage_model()
    forward = comp.compile_model(compiled, mode, backend="aot_eager")
    assert is_compiled(forward)
    x = torch.randn(2, 3, 4, 32, 32)
    out = []
    for net, fn in ((eager, eager), (compiled, forward)):
        net.train()
        torch.manual_seed(1)
        logits = fn(x)
        logits.square().sum().backward()
        out.append((logits, {n: p.grad for n, p in net.named_parameters()}))
    torch.testing.assert_close(out[1][0], out[0][0])
    for name, grad in out[0][1].items():
        torch.testing.assert_close(out[1][1][name], grad, msg=name)
    torch._dynamo.reset()
