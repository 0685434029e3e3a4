"""mvit-export (mvit_video.export_model): each format exported from the tiny checkpoint, loaded back, equal to eager."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from mvit_video.utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def export():
    import mvit_video.export_model

    return mvit_video.export_model


def _load(fmt: str, path: Path):
    if fmt == "torchscript":
        return torch.jit.load(str(path))
    if fmt == "export":
        return torch.export.load(str(path)).module()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"clips": x.numpy()})[0])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.slow
@pytest.mark.parametrize("fmt,name", [("torchscript", "m.pt"), ("export", "m.pt2"), ("onnx", "m.onnx")])
def test_export_matches_eager_on_real_views(export, fmt, name, tmp_path, tiny_checkpoint, eval_data, capsys):
    from mvit_video import Predictor

    out = tmp_path / name
    assert export.main(["--checkpoint", str(tiny_checkpoint), "--format", fmt, "--batch", "2", "--bench", "2",
                        str(out)]) == 0
    printed = capsys.readouterr().out
    assert "median of 2 after 3 warm-up calls each: eager " in printed and "x eager speed)" in printed
    diff = float(printed.split("max |Δlogit| vs eager: ")[1].split()[0])
    assert diff <= 1e-4 and "(ok," in printed
    meta = json.loads(out.with_name(name + ".json").read_text())
    assert meta["input_shape"] == [2, 3, 4, 32, 32] and meta["class_names"] == ["alpha", "beta", "gamma"]
    assert meta["attention"] == "fused"  # the fused path exports in every format with this torch

    # the file on its own, on the two center views of a real video, as Predictor makes them
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    from mvit_video.data.decoding import open_video

    with open_video(eval_data / "videos" / "v1.mp4") as reader:
        views = predictor.views(reader, views="2x1")
    exported = _load(fmt, out)
    with torch.no_grad():
        assert (exported(views) - predictor.model(views)).abs().max() <= 1e-4


@pytest.mark.slow
def test_falls_back_to_plain_attention(export, tmp_path, tiny_checkpoint):
    from mvit_video.checkpoint import load_model
    from mvit_video.models.mvit import MultiScaleAttention

    def picky(model, example, out):  # an exporter that cannot handle the fused attention
        if any(m.fused for m in model.modules() if isinstance(m, MultiScaleAttention)):
            raise RuntimeError("unsupported operator: scaled_dot_product_attention\nmore detail")
        return export.export_program(model, example, out)

    model = load_model(tiny_checkpoint)
    x = torch.randn(1, 3, 4, 32, 32)
    notes = []
    runner, attention, diff = export.export_checked(model, "export", tmp_path / "m.pt2", x, [x], 1e-4,
                                                    exporters={"export": picky}, log=notes.append)
    assert attention == "plain" and diff <= 1e-4 and model.config.attention == "plain"
    assert notes == ["export: the fused attention did not export (RuntimeError: unsupported operator: "
                     "scaled_dot_product_attention); using the plain path"]
    with pytest.raises(UserError, match="export failed with the fused attention: RuntimeError: unsupported"):
        export.export_checked(model, "export", tmp_path / "n.pt2", x, [x], 1e-4, attention="fused",
                              exporters={"export": picky})


def test_export_needs_pt2_name(export, tmp_path, tiny_checkpoint, capsys):
    with pytest.raises(SystemExit):
        export.main(["--checkpoint", str(tiny_checkpoint), "--format", "export", str(tmp_path / "m.bin")])
    assert capsys.readouterr().err.strip().endswith("torch.export files must end in .pt2 (torch.export.load refuses "
                                                    "other names)")


@pytest.mark.slow
def test_onnx_without_the_packages_is_one_line(export, tmp_path, tiny_checkpoint, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--checkpoint", str(tiny_checkpoint), "--format", "onnx", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ('error: onnx export needs onnx, onnxscript and onnxruntime: '
                                               'pip install -e ".[export]"')


def test_bench_warms_up_both_before_timing(export):
    """issue 20 item 12: an eager time that included its first (slow) calls reported onnx at 43x eager speed. Each
    runner here is slow for its first 3 calls; with 3 warm-up calls each, neither slow call is timed."""
    import time

    def runner(slow_calls: int):
        calls = []

        def run(x):
            calls.append(1)
            time.sleep(0.02 if len(calls) <= slow_calls else 0.0)
            return x

        return run, calls

    (eager, eager_calls), (exported, exported_calls) = runner(3), runner(3)
    t_eager, t_exported = export.bench(eager, exported, torch.zeros(1), runs=3, warmup=3)
    assert len(eager_calls) == len(exported_calls) == 6  # 3 warm-up + 3 timed, each
    assert t_eager < 0.01 and t_exported < 0.01
    slow_eager, _ = runner(3)
    t_eager, _ = export.bench(slow_eager, runner(0)[0], torch.zeros(1), runs=3, warmup=1)
    assert t_eager >= 0.02  # with one warm-up call the slow calls would be timed: the test can tell
