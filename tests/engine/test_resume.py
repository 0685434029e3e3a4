"""Resume that neither loses nor repeats work: exact with data workers, across world sizes, metrics.jsonl once per
epoch, changed or broken runs named."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from tiny import tiny_overrides

from mvit_video import checkpoint as ck
from mvit_video.engine import trainer
from mvit_video.train import train
from mvit_video.utils.errors import ConfigError, UserError


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_same_weights(a: Path, b: Path, epoch: int) -> None:
    want = ck.load(ck.epoch_checkpoint_path(a, epoch))["model"]
    got = ck.load(ck.epoch_checkpoint_path(b, epoch))["model"]
    assert want.keys() == got.keys()
    diff = max((want[k].float() - got[k].float()).abs().max().item() for k in want)
    assert diff == 0.0, f"max |dweight| {diff}"


@pytest.mark.slow
@pytest.mark.parametrize("augment_on", ["auto", "device"])
def test_resume_with_two_workers_is_bit_identical(tiny, augment_on: str) -> None:
    """Kill after an epoch, then SIGTERM mid-epoch, resume each time: the weights of an unbroken run, with the
    default persistent workers and mixup (before: workers' RNG streams restarted, |dweight| ~1e-3); with the
    augmentation in the workers (auto on CPU) and in the training process (device: workers send frames + draws,
    the training process applies them, erasing noise from the clips' seeds)."""
    extra = ("data_loader.num_workers=2", "train.batch_size=1", "train.eval_period=2", "mixup.enable=true",
             "solver.max_epoch=2", f"data_loader.augment_on={augment_on}")  # 4 iterations per epoch
    if augment_on == "device":
        extra += ("aug.enable=true", "aug.re_prob=1.0")  # every draw in play: RandAugment, erasing
    reference = tiny("straight", *extra)
    train(reference)

    def die_in_epoch_2(epoch: int, iteration: int) -> None:
        if (epoch, iteration) == (1, 1):
            raise RuntimeError("killed")  # as kill -9: the epoch-1 checkpoint is the last thing saved

    with pytest.raises(RuntimeError, match="killed"):
        train(tiny("broken", *extra), on_step=die_in_epoch_2)

    def preempt_mid_epoch(epoch: int, iteration: int) -> None:
        if (epoch, iteration) == (1, 2):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SystemExit):
        train(tiny("broken", *extra), on_step=preempt_mid_epoch)
    out = Path(tiny("broken").output_dir)
    assert ck.load(ck.preempt_checkpoint_path(out))["sampler"]["batches_done"] == 3
    train(tiny("broken", *extra))
    _assert_same_weights(Path(reference.output_dir), out, 2)
    # The interrupted epoch's line covers all of it: the same as the unbroken run's
    got, want = _metrics(out), _metrics(Path(reference.output_dir))
    assert [(m["split"], m["epoch"]) for m in got] == [(m["split"], m["epoch"]) for m in want]
    assert [m.get("loss") for m in got] == pytest.approx([m.get("loss") for m in want])


def _sigterm_in_the_first_validation(validate, send: bool = True):
    """`validate` (eval.testing's, as the trainer calls it) that sends this process SIGTERM while the first
    validation's second batch is being fetched, when `send`; later validations run untouched."""
    calls = []

    def signalled(forward, loader, *args, **kwargs):
        calls.append(1)

        def batches():
            for n, batch in enumerate(loader):
                if n == 1 and send and len(calls) == 1:
                    os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first val batch is being scored
                yield batch

        return validate(forward, batches() if len(calls) == 1 else loader, *args, **kwargs)

    return signalled


@pytest.mark.slow
def test_a_stop_signal_during_validation_saves_the_epoch_and_the_rerun_validates_it(tiny, monkeypatch) -> None:
    """A K400 validation takes minutes, more than the grace period after SLURM's signal: a stop signal during it
    ends it at the next batch and saves the end of the epoch's training (status 143), instead of waiting and
    losing the epoch. The rerun validates that epoch and goes on: the weights, the val figures and the train line
    of an unbroken run."""
    extra = ("train.batch_size=1", "train.eval_period=1", "solver.max_epoch=2", "data_loader.num_workers=2")  # default
    reference = tiny("straight", *extra)
    train(reference)

    real_validate = trainer.validate
    monkeypatch.setattr(trainer, "validate", _sigterm_in_the_first_validation(real_validate))
    with pytest.raises(SystemExit) as stopped:
        train(tiny("broken", *extra))
    assert stopped.value.code == 128 + signal.SIGTERM
    out = Path(tiny("broken").output_dir)
    saved = ck.load(ck.preempt_checkpoint_path(out))
    assert (saved["epoch"], saved["sampler"]["batches_done"]) == (0, 4)  # epoch 1 trained, not validated
    assert [m["split"] for m in _metrics(out)] == ["train"]
    monkeypatch.setattr(trainer, "validate", real_validate)
    train(tiny("broken", *extra))
    _assert_same_weights(Path(reference.output_dir), out, 2)
    got, want = _metrics(out), _metrics(Path(reference.output_dir))
    assert [(m["split"], m["epoch"]) for m in got] == [(m["split"], m["epoch"]) for m in want]
    for g, w in zip(got, want):  # all figures but the speed, which differs between two runs
        assert {k: v for k, v in g.items() if "per_s" not in k and "wait" not in k and k != "mfu"} == pytest.approx(
            {k: v for k, v in w.items() if "per_s" not in k and "wait" not in k and k != "mfu"})
    assert "saving" in (log := (out / "train.log").read_text()) and "at epoch 1, iteration 4/4 (stopped its val" in log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_rank(rank: int, world: int, port: int) -> None:
    """This spawned process as rank `rank` of `world` (torchrun's variables), one thread."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)


def _rank(rank: int, world: int, port: int, cfg, stop_at: int | None) -> None:
    _as_rank(rank, world, port)

    def stop(epoch: int, iteration: int) -> None:
        if rank == 0 and iteration == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        train(cfg, on_step=stop if stop_at else None)
    except SystemExit as e:
        if e.code != 128 + signal.SIGTERM:
            raise


def _spawn(cfg, world: int, stop_at: int | None = None) -> None:
    mp.spawn(_rank, args=(world, _free_port(), cfg, stop_at), nprocs=world, join=True)


@pytest.fixture
def twelve_videos(kinetics_list_dir, tmp_path) -> Path:
    """The fixture videos listed 3 times: 12 training samples, 6 global batches of 2."""
    d = tmp_path / "lists12"
    d.mkdir()
    for split in ("train", "val"):
        lines = (kinetics_list_dir / f"{split}.csv").read_text().splitlines()
        (d / f"{split}.csv").write_text("\n".join(lines * (3 if split == "train" else 1)) + "\n")
    return d


def _run_cfg(lists: Path, out: Path):
    from mvit_video.config import compose

    return compose(tiny_overrides(lists, out, "solver.max_epoch=1", "solver.warmup_epochs=0",
                                  "train.eval_period=5", "train.checkpoint_period=5"))


@pytest.mark.slow
def test_resume_across_world_sizes_continues_at_the_global_batch(twelve_videos, tmp_path) -> None:
    """6 global batches: 1 process preempted after 3, resumed with 2 (gloo) and preempted after 5, resumed with 1:
    each batch trained once (before: 1 -> 2 restarted at an earlier batch, 2 -> 1 skipped to the end of the epoch
    and wrote a loss-0.0 line)."""
    cfg = _run_cfg(twelve_videos, tmp_path / "run")
    out = Path(cfg.output_dir)

    def stop(epoch: int, iteration: int) -> None:
        if iteration == 2:  # the step in progress when the signal comes (the 3rd) finishes first
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SystemExit):
        train(cfg, on_step=stop)
    assert ck.load(ck.preempt_checkpoint_path(out))["sampler"]["batches_done"] == 3
    _spawn(cfg, 2, stop_at=4)
    saved = ck.load(ck.preempt_checkpoint_path(out))
    assert saved["sampler"]["batches_done"] == 5 and saved["scheduler"]["step"] == 5  # 3 + 2: none twice
    train(cfg)
    saved = ck.load(ck.epoch_checkpoint_path(out, 1))
    assert saved["scheduler"]["step"] == 6 and saved["epoch"] == 1  # 5 + 1: none skipped
    log = (out / "train.log").read_text()
    assert "resuming with 2 processes instead of 1: epoch 1 continues at global batch 3/6" in log
    assert "resuming with 1 process instead of 2: epoch 1 continues at global batch 5/6" in log
    lines = _metrics(out)
    assert [m["epoch"] for m in lines if m["split"] == "train"] == [1] and lines[0]["loss"] > 0


def _rank_signalled_in_validation(rank: int, world: int, port: int, cfg) -> None:
    """A rank of a 2-process run in which only rank 0 gets SIGTERM, during its second val batch."""
    _as_rank(rank, world, port)
    trainer.validate = _sigterm_in_the_first_validation(trainer.validate, send=rank == 0)
    with pytest.raises(SystemExit) as stopped:
        train(cfg)
    assert stopped.value.code == 128 + signal.SIGTERM


@pytest.mark.slow
def test_one_rank_signalled_during_validation_stops_every_rank_at_the_same_place(twelve_videos, tmp_path) -> None:
    """Ranks hold different shares of the val list and the signal may reach one rank only: no rank waits for
    another (the stop travels with the gathered results), both save the same position, the rerun validates."""
    cfg = _run_cfg(twelve_videos, tmp_path / "run")
    out = Path(cfg.output_dir)
    mp.spawn(_rank_signalled_in_validation, args=(2, _free_port(), cfg), nprocs=2, join=True)
    saved = ck.load(ck.preempt_checkpoint_path(out))
    assert (saved["epoch"], saved["sampler"]["batches_done"], saved["scheduler"]["step"]) == (0, 6, 6)
    train(cfg)
    assert [(m["split"], m["epoch"]) for m in _metrics(out)] == [("train", 1), ("val", 1)]
    assert ck.load(ck.epoch_checkpoint_path(out, 1))["scheduler"]["step"] == 6  # no step trained twice


@pytest.mark.slow
def test_metrics_hold_each_epoch_once_whatever_was_killed_when(tiny, monkeypatch) -> None:
    """A kill between the epoch's metrics lines and its checkpoint repeats the epoch on resume: it must not repeat
    the lines. A finished command run again adds no second test line."""
    cfg = tiny("killed", "solver.max_epoch=3", "test.enable=true")
    out = Path(cfg.output_dir)
    real_save = ck.save

    def dying_save(data, path):
        if Path(path).name == "checkpoint_epoch_00002.pyth":
            raise KeyboardInterrupt  # the process dies while writing the checkpoint of epoch 2
        real_save(data, path)

    monkeypatch.setattr(ck, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert [m["epoch"] for m in _metrics(out)] == [1, 1, 2, 2]  # epoch 2's lines, not its checkpoint
    monkeypatch.setattr(ck, "save", real_save)
    train(tiny("killed", "solver.max_epoch=3", "test.enable=true"))
    train(tiny("killed", "solver.max_epoch=3", "test.enable=true"))  # finished: nothing to add
    assert [(m["split"], m.get("epoch")) for m in _metrics(out)] == [
        ("train", 1), ("val", 1), ("train", 2), ("val", 2), ("train", 3), ("val", 3), ("test", 3)]


@pytest.mark.slow
def test_resuming_a_changed_run(tiny, caplog) -> None:
    cfg = tiny("changed")
    out = Path(cfg.output_dir)
    train(cfg)
    # Another architecture in the same output_dir: one line naming the keys, not a size-mismatch traceback.
    with pytest.raises(UserError, match=r"another architecture \(mvit.embed_dim 16 -> 24\)") as e:
        train(tiny("changed", "mvit.embed_dim=24"))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="solver.optimizing_method adamw -> sgd"):
        train(tiny("changed", "solver.optimizing_method=sgd"))
    # A longer schedule moves the LR at the resume point: warned, naming the key.
    caplog.clear()
    with caplog.at_level("WARNING"):
        train(tiny("changed", "solver.max_epoch=3"))
    assert "changed settings" in caplog.text and "solver.max_epoch 2 -> 3" in caplog.text
    # Resume from a chosen checkpoint (here epoch 1 of 3, into a fresh output_dir).
    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("chosen", "solver.max_epoch=3", f"train.resume_from={ck.epoch_checkpoint_path(out, 1)}"))
    assert f"Resuming from {ck.epoch_checkpoint_path(out, 1)} (epoch 1, iteration 2)" in caplog.text
    assert [m["epoch"] for m in _metrics(Path(tiny("chosen").output_dir)) if m["split"] == "train"] == [2, 3]
    with pytest.raises(ConfigError, match="'train.resume_from'"):
        train(tiny("chosen", "train.resume_from=/nonexistent.pyth"))


@pytest.mark.slow
def test_resume_from_an_earlier_checkpoint_of_the_run_sets_its_future_aside_and_reruns_continue(tiny, caplog) -> None:
    """train.resume_from=<epoch 1 of this run's 3>: the checkpoints past it, the test reports and TensorBoard go to
    previous/<time>/ with a copy of metrics.jsonl (nothing deleted, nothing of two histories mixed: the latest is
    never the abandoned epoch 3); the same command run again after a crash (or a requeue) continues this history
    instead of starting over from epoch 1; retention never deletes the named checkpoint."""
    first = tiny("rewind", "solver.max_epoch=3", "test.enable=true")
    out = Path(first.output_dir)
    train(first)
    start = ck.epoch_checkpoint_path(out, 1)
    again = ("solver.max_epoch=3", "test.enable=true", f"train.resume_from={start}", "train.keep_checkpoints=1")

    def crash_in_epoch_3(epoch: int, iteration: int) -> None:
        if (epoch, iteration) == (2, 1):
            raise RuntimeError("killed")

    with caplog.at_level("INFO"), pytest.raises(RuntimeError, match="killed"):
        train(tiny("rewind", *again), on_step=crash_in_epoch_3)
    (aside,) = (out / "previous").iterdir()
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == [
        "checkpoint_epoch_00002.pyth", "checkpoint_epoch_00003.pyth"]
    assert (aside / "predictions.jsonl").is_file() and (aside / "tensorboard").is_dir()
    assert [m["epoch"] for m in _metrics(aside)] == [1, 1, 2, 2, 3, 3, 3]  # the abandoned history, whole
    assert f"train.resume_from={start}: the files in {out} from another history" in caplog.text
    assert f"Resuming from {start} (epoch 1, " in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("rewind", *again))  # the same command: continues at epoch 2, moves nothing
    assert f"Resuming from {ck.epoch_checkpoint_path(out, 2)} (epoch 2, " in caplog.text
    assert len(list((out / "previous").iterdir())) == 1
    # Training from epoch 1 again gives the abandoned run's weights (deterministic on CPU); epoch 1 survives
    # train.keep_checkpoints=1 (the command names it), epoch 2 does not.
    _assert_same_weights(aside, out, 3)
    assert [p for _, p in ck.epoch_checkpoints(out)] == [start, ck.epoch_checkpoint_path(out, 3)]
    assert [(m["split"], m["epoch"]) for m in _metrics(out)] == [
        ("train", 1), ("val", 1), ("train", 2), ("val", 2), ("train", 3), ("val", 3), ("test", 3)]
    assert ck.load(ck.epoch_checkpoint_path(out, 3))["origin"] == str(start.resolve())


@pytest.mark.slow
def test_resume_from_another_runs_checkpoint_moves_the_run_in_output_dir_aside(tiny) -> None:
    """Resuming run A's checkpoint into an output_dir that holds run B: B's files go to previous/<time>/, so B's
    later checkpoints can neither be resumed (a mix of two runs) nor evaluated as this run's."""
    a, b = tiny("a"), tiny("b", "solver.max_epoch=2")
    train(a)
    train(b)
    train(tiny("b", "solver.max_epoch=2", f"train.resume_from={ck.epoch_checkpoint_path(Path(a.output_dir), 1)}"))
    out = Path(b.output_dir)
    (aside,) = (out / "previous").iterdir()
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == [
        "checkpoint_best.pyth", "checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    assert [m["epoch"] for m in _metrics(out) if m["split"] == "train"] == [2]  # only this history's epochs
    _assert_same_weights(Path(a.output_dir), out, 2)  # A's run, continued


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_and_orphans_are_removed(tiny, caplog) -> None:
    cfg = tiny("corrupt")
    out = Path(cfg.output_dir)
    train(cfg)
    latest = ck.epoch_checkpoint_path(out, 2)
    latest.write_bytes(latest.read_bytes()[:1000])  # torn (e.g. a full disk)
    orphan = out / "checkpoints" / ".checkpoint_epoch_00003.pyth.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")
    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny("corrupt"))
    assert f"skipping unreadable checkpoint {latest}" in caplog.text
    assert f"Resuming from {ck.epoch_checkpoint_path(out, 1)} (epoch 1, iteration 2)" in caplog.text
    assert not orphan.exists()
    ck.load(latest)  # epoch 2 trained again and saved intact
    assert [(m["split"], m["epoch"]) for m in _metrics(out)] == [("train", 1), ("val", 1), ("train", 2), ("val", 2)]


@pytest.mark.slow
def test_class_count_and_label_errors_come_before_the_first_step(kinetics_list_dir, tmp_path) -> None:
    from mvit_video.config import compose

    steps = []
    lists = tmp_path / "lists"
    lists.mkdir()
    for split in ("train", "val", "test"):
        (lists / f"{split}.csv").write_text((kinetics_list_dir / f"{split}.csv").read_text())
    (lists / "classes.txt").write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(ConfigError, match="'model.num_classes' is 2 but .* has 5 classes"):
        train(compose(tiny_overrides(lists, tmp_path / "a")), on_step=lambda *_: steps.append(1))
    (lists / "classes.txt").unlink()
    good = (kinetics_list_dir / "val.csv").read_text()
    (lists / "val.csv").write_text(good + good.splitlines()[0].rsplit(" ", 1)[0] + " 7\n")
    with pytest.raises(ConfigError, match="the val list has label 7 .* model.num_classes is 2"):
        train(compose(tiny_overrides(lists, tmp_path / "b")), on_step=lambda *_: steps.append(1))
    assert steps == []


def test_model_written_by_stages_resumes_a_checkpoint_with_explicit_lists() -> None:
    """A checkpoint from before mvit.depths stored PySlowFast's per-block lists: the same network, no warning;
    a real change is still named."""
    import dataclasses

    from mvit_video.checkpoint import plain
    from mvit_video.config import build_config
    from mvit_video.config import compose as compose_cfg
    from mvit_video.engine.resume import model_changes
    from mvit_video.models.config import per_block_lists

    config = build_config(compose_cfg(["+experiment=k400_s_16x4"])).model
    explicit = dataclasses.replace(config, depths=None, **per_block_lists(config))
    old = plain(dataclasses.asdict(explicit))
    assert model_changes(old, config) == []
    wider = dataclasses.replace(config, embed_dim=128)
    assert model_changes(old, wider) == ["mvit.embed_dim 96 -> 128"]
    assert model_changes(old, dataclasses.replace(config, depths=[1, 2, 10, 3])) != []
