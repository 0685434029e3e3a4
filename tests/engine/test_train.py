"""End-to-end training on real (tiny) videos: outputs, auto-resume, exact resume after SIGTERM, NaN stop."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from tiny import tiny_overrides

from mvit_video import checkpoint as ck
from mvit_video.engine.loop import TrainingDiverged
from mvit_video.train import train


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_train_writes_metrics_checkpoints_logs_and_resumes(tiny, caplog) -> None:
    cfg = tiny("run")
    out = Path(cfg.output_dir)
    result = train(cfg)
    lines = _metrics(out)
    assert [(m["split"], m["epoch"]) for m in lines] == [("train", 1), ("val", 1), ("train", 2), ("val", 2)]
    assert {"loss", "top1", "lr", "clips_per_s"} <= set(lines[0]) and lines[0]["clips_per_s"] > 0
    assert 0 <= lines[1]["top1"] <= 100 and lines[1]["top5"] == 100.0  # 2 classes: top-5 always right
    assert result["val"]["epoch"] == 2
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["checkpoint_best.pyth", "checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    assert "epoch 2/2" in (out / "train.log").read_text()
    assert any((out / "tensorboard").iterdir()) and (out / "config.yaml").is_file()

    saved = ck.load(out / "checkpoints" / "checkpoint_epoch_00002.pyth")
    assert {"model", "model_config", "data_config", "optimizer", "scheduler", "scaler", "ema", "rng", "sampler",
            "cfg", "epoch"} <= set(saved)
    # the position is stored once: completed epochs + global batches into the next one
    assert saved["epoch"] == 2 and saved["sampler"]["batches_done"] == 0 and saved["scheduler"] == {"step": 4}
    assert "iteration" not in saved and set(saved["sampler"]) == {"batches_done", "world_size", "batch_size",
                                                                  "partial"}
    assert "num_frames: 4" in saved["cfg"]
    from mvit_video.checkpoint import load_model

    model = load_model(out / "checkpoints" / "checkpoint_epoch_00002.pyth")
    assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 2)

    # The same command again: resumes from the latest checkpoint and says so; nothing left to train.
    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("run"))
    assert f"Resuming from {out / 'checkpoints' / 'checkpoint_epoch_00002.pyth'} (epoch 2, iteration 4)" in caplog.text
    assert len(_metrics(out)) == 4


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    return ck.load(ck.epoch_checkpoint_path(out, 2))["model"]


@pytest.mark.slow
def test_resume_after_sigterm_gives_the_same_weights(tiny, caplog) -> None:
    extra = ("train.batch_size=1", "train.eval_period=2", "train.checkpoint_period=2")  # 4 iterations per epoch
    reference = tiny("straight", *extra)
    train(reference)

    def kill_mid_epoch(epoch: int, iteration: int) -> None:
        if (epoch, iteration) == (1, 1):
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal: the handler, not a test flag

    interrupted = tiny("interrupted", *extra)
    out = Path(interrupted.output_dir)
    with pytest.raises(SystemExit) as e:
        train(interrupted, on_step=kill_mid_epoch)
    assert e.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    saved = ck.load(ck.preempt_checkpoint_path(out))
    # The step in progress when the signal came (iteration 2 of epoch 2) finished before saving.
    assert (saved["epoch"], saved["sampler"]["batches_done"], saved["scheduler"]["step"]) == (1, 2, 6)
    assert not ck.epoch_checkpoint_path(out, 2).exists()

    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("interrupted", *extra))
    assert "Resuming from" in caplog.text and "checkpoint_preempt.pyth (epoch 1, iteration 6)" in caplog.text
    assert not ck.preempt_checkpoint_path(out).exists()  # superseded by the epoch checkpoint
    want, got = _final_weights(Path(reference.output_dir)), _final_weights(out)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    train_lines = [m for m in _metrics(out) if m["split"] == "train"]
    assert [m["epoch"] for m in train_lines] == [1, 2]


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny) -> None:
    train(tiny("nan", "solver.max_epoch=1", "solver.warmup_epochs=0"))
    out = Path(tiny("nan").output_dir)
    # Continue with an absurd LR: the weights blow up, the loss turns NaN/inf in epoch 2.
    with pytest.raises(TrainingDiverged, match=r"(loss is (nan|inf)|weights became NaN/inf).* epoch 2") as e:
        train(tiny("nan", "solver.base_lr=1e30", "solver.warmup_epochs=0"))
    assert "last good checkpoint" in str(e.value)
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint_epoch_*")) == ["checkpoint_epoch_00001.pyth"]
    good = ck.load(ck.epoch_checkpoint_path(out, 1))["model"]
    assert all(torch.isfinite(v).all() for v in good.values() if v.is_floating_point())


@pytest.mark.slow
def test_ema_accumulation_bf16_and_finetuning_with_a_new_head(tiny, caplog) -> None:
    cfg = tiny("options", "solver.max_epoch=1", "solver.warmup_epochs=0", "train.batch_size=1",
               "train.grad_accum_steps=2", "train.ema.enable=true", "train.ema.decay=0.5",
               "train.mixed_precision=true", "train.amp_dtype=bf16")
    out = Path(cfg.output_dir)
    train(cfg)
    saved = ck.load(ck.epoch_checkpoint_path(out, 1))
    assert saved["scheduler"]["step"] == 2  # 4 batches, one optimizer step per 2
    assert saved["ema"] is not None and saved["ema"].keys() == saved["model"].keys()
    assert any(not torch.equal(saved["ema"][k], saved["model"][k]) for k in saved["model"])
    assert [m["split"] for m in _metrics(out)] == ["train", "val", "val_ema"]

    # Fine-tune those weights on a 3-class problem: the head is re-initialised and the log says so.
    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("finetune", "solver.max_epoch=1", "solver.warmup_epochs=0", "model.num_classes=3",
                   f"train.checkpoint_file_path={ck.epoch_checkpoint_path(out, 1)}"))
    assert "head re-initialised for 3 classes" in caplog.text
    tuned = ck.load(ck.epoch_checkpoint_path(Path(tiny("finetune").output_dir), 1))["model"]
    assert tuned["head.projection.weight"].shape[0] == 3


@pytest.mark.slow
def test_accumulating_two_half_batches_trains_as_the_full_batch(tiny) -> None:
    """train.grad_accum_steps=2 with train.batch_size=1 ends an epoch with the weights of train.batch_size=2 (to
    float tolerance): same clips in the same order, same LR per step, the loss of a group averaged over it.
    Dropout and drop path are off (their random draws would differ between the two batchings); SGD without
    clipping, whose step is proportional to the gradient (AdamW's first steps blow float noise of near-zero
    gradients up to the LR; clipping to a norm would hide a gradient of the wrong scale)."""
    common = ("solver.max_epoch=1", "solver.warmup_epochs=0", "model.dropout_rate=0.0", "mvit.droppath_rate=0.0",
              "solver.optimizing_method=sgd", "solver.base_lr=0.1", "solver.cosine_end_lr=0.001",
              "solver.clip_grad_l2norm=null")
    full = tiny("full", *common, "train.batch_size=2")
    half = tiny("half", *common, "train.batch_size=1", "train.grad_accum_steps=2")
    train(full)
    train(half)
    weights = {name: ck.load(ck.epoch_checkpoint_path(Path(c.output_dir), 1)) for name, c in (("full", full),
                                                                                              ("half", half))}
    assert weights["full"]["scheduler"]["step"] == weights["half"]["scheduler"]["step"] == 2
    for key, value in weights["full"]["model"].items():
        assert torch.allclose(weights["half"]["model"][key], value, rtol=1e-4, atol=1e-6), key


@pytest.mark.slow
def test_fp16_with_grad_scaler(tiny) -> None:
    """fp16 autocast trains through the GradScaler (on CPU here): finite loss, scaler state in the checkpoint."""
    cfg = tiny("fp16", "solver.max_epoch=1", "solver.warmup_epochs=0", "train.mixed_precision=true",
               "train.amp_dtype=fp16")
    out = Path(cfg.output_dir)
    train(cfg)
    saved = ck.load(ck.epoch_checkpoint_path(out, 1))
    assert saved["scaler"] is not None and saved["scaler"]["scale"] > 0
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    assert all(v.dtype == torch.float32 for v in saved["model"].values() if v.is_floating_point())
    train_line = _metrics(out)[0]
    assert train_line["split"] == "train" and torch.isfinite(torch.tensor(train_line["loss"]))


@pytest.mark.slow
def test_bad_videos_are_logged_once_and_listed(kinetics_list_dir, video_dir, tmp_path, caplog) -> None:
    from mvit_video.config import compose
    lists = tmp_path / "lists"
    lists.mkdir()
    good = (kinetics_list_dir / "train.csv").read_text()
    (lists / "train.csv").write_text(good + f"{video_dir / 'garbage.mp4'} 1\n{video_dir / 'empty.mp4'} 0\n")
    (lists / "val.csv").write_text(good)
    cfg = compose(tiny_overrides(lists, tmp_path / "out", "train.batch_size=3", "solver.max_epoch=2"))
    with caplog.at_level("INFO"):
        train(cfg)
    listed = (tmp_path / "out" / "bad_videos.txt").read_text().splitlines()
    assert sorted(listed) == sorted({str(video_dir / "garbage.mp4"), str(video_dir / "empty.mp4")})
    assert caplog.text.count(f"cannot decode {video_dir / 'garbage.mp4'}") == 1  # once, not every epoch
    assert "decode failures" in caplog.text
