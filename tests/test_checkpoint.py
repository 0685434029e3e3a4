"""mvit_video/checkpoint/: our format (make_checkpoint, read back by load_model / load_checkpoint_info), the
training-state helpers (RNG round trip, latest-checkpoint choice, bad files), and pretrained weights in (ours with
another head, PySlowFast's, torchvision's)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_config
from torch import nn

from mvit_video import checkpoint as ck
from mvit_video.config import build_config, compose
from mvit_video.models import MViT, MViTConfig
from mvit_video.settings import CheckpointData
from mvit_video.utils.errors import UserError
from mvit_video.utils.io import atomic_torch_save


def randomized(model: nn.Module, seed: int) -> nn.Module:
    """Random values for all weights (different from the init) so a wrong load cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.dim() == 1 else 0.0))
    return model


DATA_CONFIG = {
    "num_frames": 4, "sampling_rate": 2, "target_fps": 30, "train_crop_size": 32, "test_crop_size": 32,
    "mean": [0.45] * 3, "std": [0.225] * 3, "dataset": "kinetics", "use_offset_sampling": True,
    "train_jitter_scales": [256, 320],
}  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, MViT, MViT]:
    """A checkpoint as training writes it (model + ema + training keys); returns (path, model, ema model)."""
    torch.manual_seed(0)
    config = tiny_config(num_classes=3)
    model, ema = randomized(MViT(config), 1).eval(), randomized(MViT(config), 2).eval()
    ckpt = ck.make_checkpoint(model, config, DATA_CONFIG, ["a", "b", "c"])
    optimizer = torch.optim.AdamW(model.parameters())
    ckpt.update(epoch=3, optimizer=optimizer.state_dict(), ema=ema.state_dict(), cfg="name: x\n")
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint_epoch_00003.pyth"
    atomic_torch_save(ckpt, path)
    return path, model, ema


def test_round_trip(saved):
    path, model, ema = saved
    loaded = ck.load_model(path)
    assert isinstance(loaded, MViT) and not loaded.training
    assert ck.load_checkpoint_info(path)["class_names"] == ["a", "b", "c"]  # the checkpoint's names, not the model's
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
        assert torch.allclose(ck.load_model(path, use_ema=True)(x), ema(x), atol=1e-5)
    # The saved checkpoint is plain data: it loads with weights_only=True (load_model uses that too).
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "mvit_video/1" and raw["model_config"]["depth"] == 3


def test_checkpoint_info(saved):
    path, _, _ = saved
    info = ck.load_checkpoint_info(path)
    assert info["model_config"]["num_classes"] == 3 and info["model_config"]["depths"] == [1, 2]
    assert info["data_config"] == DATA_CONFIG
    assert info["class_names"] == ["a", "b", "c"] and info["epoch"] == 3
    assert MViTConfig.from_dict(info["model_config"]) == tiny_config(num_classes=3)


def test_prefixed_and_ema_wrapper_weights(tmp_path):
    """Weights saved through DDP (`module.`) or torch.compile (`_orig_mod.`), EMA saved as an AveragedModel."""
    config = tiny_config(num_classes=3)
    model = randomized(MViT(config), 3).eval()
    ckpt = ck.make_checkpoint(model, config, DATA_CONFIG, None)
    ckpt["model"] = {f"module._orig_mod.{k}": v for k, v in ckpt["model"].items()}
    ckpt["ema"] = {"n_averaged": torch.tensor(5), **{f"module.{k}": v for k, v in model.state_dict().items()}}
    path = tmp_path / "wrapped.pyth"
    atomic_torch_save(ckpt, path)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ck.load_model(path)(x), model(x), atol=1e-5)
        assert torch.allclose(ck.load_model(path, use_ema=True)(x), model(x), atol=1e-5)


def test_load_errors_name_the_path(tmp_path, saved):
    missing = tmp_path / "nope.pyth"
    with pytest.raises(UserError, match=f"{missing}: no such file"):
        ck.load_model(missing)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(UserError, match=f"{text}: not a PyTorch checkpoint"):
        ck.load_model(text)
    with pytest.raises(UserError, match="is a directory"):
        ck.load_checkpoint_info(tmp_path)
    slowfast = tmp_path / "K400_MVITv2_S_16x4.pyth"
    torch.save({"model_state": {"cls_token": torch.zeros(1, 1, 16)}, "cfg": "MVIT: {}\n", "epoch": 1}, slowfast)
    with pytest.raises(UserError, match=f"{slowfast}: not an mvit_video checkpoint.*PySlowFast.*convert_checkpoint"):
        ck.load_model(slowfast)
    torchvision = tmp_path / "mvit_v2_s.pth"
    torch.save({"conv_proj.weight": torch.zeros(1)}, torchvision)
    with pytest.raises(UserError, match="--from torchvision"):
        ck.load_model(torchvision)
    # Missing EMA, and weights that do not fit the stored config: the message names the file and the key.
    path, _, _ = saved
    no_ema = tmp_path / "no_ema.pyth"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["ema"]
    del ckpt["model"]["blocks.1.attn.rel_pos_t"]
    torch.save(ckpt, no_ema)
    with pytest.raises(UserError, match="no EMA weights"):
        ck.load_model(no_ema, use_ema=True)
    with pytest.raises(UserError, match=f"{no_ema}: weights do not fit the model \\(missing: blocks.1.attn.rel_pos_t"):
        ck.load_model(no_ema)


def test_make_checkpoint_checks_class_names():
    config = tiny_config(num_classes=3)
    with pytest.raises(UserError, match="2 class names given but the model has num_classes=3"):
        ck.make_checkpoint(MViT(config), config, DATA_CONFIG, ["a", "b"])


def test_class_names_of_another_length_than_the_head_are_refused_at_load(saved, tmp_path):
    """Before: 2 names for a 3-class head loaded, and reports printed the third class as a bare index."""
    path, _, _ = saved
    ckpt = torch.load(path, weights_only=True)
    bad = tmp_path / "bad.pyth"
    atomic_torch_save({**ckpt, "class_names": ["a", "b"]}, bad)
    for load in (ck.load_model, ck.load_checkpoint_info):
        with pytest.raises(UserError, match=f"{bad}: holds 2 class names but its head has 3 classes"):
            load(bad)
    atomic_torch_save({**ckpt, "class_names": ["a", 2, "c"]}, bad)
    with pytest.raises(UserError, match="class_names is not a list of strings"):
        ck.load_checkpoint_info(bad)


def test_data_config_carries_data_and_test_views():
    run = build_config(compose(["+experiment=ssv2_b_32x3"]))
    data = CheckpointData.from_run(run).to_dict()
    assert list(data) == list(CheckpointData.keys())
    assert data["mean"] == list(run.data.mean) and type(data["mean"]) is list  # plain lists: weights_only loads
    assert data["train_jitter_scales"] == list(run.data.train_jitter_scales)
    assert data["num_frames"] == 32 and data["dataset"] == "ssv2" and data["frame_grid_fps"] == 30
    assert (data["num_ensemble_views"], data["num_spatial_crops"]) == (1, 3)  # the test protocol, for infer.py


# ---------------------------------------------------------------- training state and pretrained weights


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ck.save({"rng": [ck.get_rng_state()]}, tmp_path / "r.pyth")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.set_rng_state(ck.load(tmp_path / "r.pyth")["rng"][0])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def _write(path: Path, epoch: int, batches_done: int = 0, old_format: bool = False) -> None:
    # checkpoints written before the position was stored once carried a per-process start_index instead
    position = {"start_index": batches_done * 4} if old_format else {"batches_done": batches_done}
    ck.save({"epoch": epoch, "sampler": position}, path)


def _latest(output_dir: Path) -> Path | None:
    return ck.load_latest(output_dir)[0]


def test_latest_prefers_furthest_progress(tmp_path: Path) -> None:
    assert _latest(tmp_path) is None
    with pytest.raises(UserError, match="no checkpoint in"):
        ck.latest_checkpoint(tmp_path)
    _write(ck.epoch_checkpoint_path(tmp_path, 2), 2)
    _write(ck.epoch_checkpoint_path(tmp_path, 10), 10)
    assert _latest(tmp_path).name == "checkpoint_epoch_00010.pyth"  # numeric, not mtime
    _write(ck.preempt_checkpoint_path(tmp_path), 10, batches_done=2)  # mid-way through epoch 11
    assert _latest(tmp_path).name == "checkpoint_preempt.pyth"
    _write(ck.preempt_checkpoint_path(tmp_path), 10, batches_done=2, old_format=True)
    assert _latest(tmp_path).name == "checkpoint_preempt.pyth"
    _write(ck.preempt_checkpoint_path(tmp_path), 10, batches_done=0)  # saved at the end of epoch 10: a tie
    assert _latest(tmp_path).name == "checkpoint_epoch_00010.pyth"
    _write(ck.preempt_checkpoint_path(tmp_path), 10, batches_done=2)
    (ck.epoch_checkpoint_path(tmp_path, 10)).write_bytes(b"torn")  # a corrupt newest epoch file is skipped too
    assert _latest(tmp_path).name == "checkpoint_preempt.pyth"
    _write(ck.epoch_checkpoint_path(tmp_path, 11), 11)  # an older preemption file is superseded
    assert _latest(tmp_path).name == "checkpoint_epoch_00011.pyth"
    # A temp file left by a crash mid-write is never picked.
    (ck.checkpoint_dir(tmp_path) / ".checkpoint_epoch_00012.pyth.abc.tmp").write_bytes(b"torn")
    assert _latest(tmp_path).name == "checkpoint_epoch_00011.pyth"


def test_unreadable_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pyth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pyth"):
        ck.load(tmp_path / "bad.pyth")
    with pytest.raises(UserError, match="does not exist"):
        ck.load(tmp_path / "missing.pyth")


class _Net(nn.Module):
    def __init__(self, classes: int, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Linear(4, width)
        self.head = nn.Module()
        self.head.projection = nn.Linear(width, classes)

    def get_classifier(self) -> nn.Linear:
        """The layer fine-tuning may re-initialise (MViT's method; load_pretrained asks the model, not its names)."""
        return self.head.projection


@pytest.mark.slow
def test_load_pretrained_reinitialises_a_head_of_another_size(tmp_path: Path, caplog) -> None:
    src = _Net(400)
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "k400.pyth")  # saved from DDP
    dst = _Net(174)
    head_before = dst.head.projection.weight.clone()
    with caplog.at_level("INFO"):
        ck.load_pretrained(dst, tmp_path / "k400.pyth")
    assert torch.equal(dst.body.weight, src.body.weight)  # body copied (DDP prefix removed)
    assert torch.equal(dst.head.projection.weight, head_before)  # head kept fresh
    assert "head re-initialised for 174 classes" in caplog.text
    with pytest.raises(UserError, match="body.weight"):
        ck.load_pretrained(_Net(174, width=9), tmp_path / "k400.pyth")


_PYSLOWFAST_YAML = """\
TRAIN:
  DATASET: {dataset}
DATA:
  NUM_FRAMES: 4
  TRAIN_CROP_SIZE: 32
  INPUT_CHANNEL_NUM: [3]
  REVERSE_INPUT_CHANNEL: {reverse}
MVIT:
  DEPTH: 2
  EMBED_DIM: 16
  PATCH_PADDING: (1, 3, 3)
  USE_ABS_POS: False
  REL_POS_SPATIAL: True
  REL_POS_TEMPORAL: True
  POOL_KVQ_KERNEL: [3, 3, 3]
  POOL_KV_STRIDE_ADAPTIVE: [1, 4, 4]
  POOL_Q_STRIDE: [[0, 1, 1, 1], [1, 1, 2, 2]]
  DIM_MUL: [[1, 2.0]]
  HEAD_MUL: [[1, 2.0]]
  RESIDUAL_POOLING: True
  DIM_MUL_IN_ATT: True
MODEL:
  NUM_CLASSES: 5
  ARCH: mvit
  MODEL_NAME: MViT
"""


def _tiny_mvit(yaml_text: str, seed: int = 0):
    from mvit_video.models import MViT
    from mvit_video.models.convert import config_from_slowfast_yaml

    torch.manual_seed(seed)
    config = config_from_slowfast_yaml(yaml_text)[0]
    return MViT(config).eval(), config


@pytest.mark.slow
@pytest.mark.parametrize("dataset, reverse, flipped", [("ssv2", False, True), ("ssv2", True, False),
                                                       ("kinetics", False, False)])  # fmt: skip
def test_load_pretrained_converts_pyslowfast_checkpoints(tmp_path: Path, dataset, reverse, flipped) -> None:
    """A PySlowFast .pyth goes through convert.from_slowfast: a BGR-input kernel is folded to RGB, keys checked."""
    yaml_text = _PYSLOWFAST_YAML.format(dataset=dataset, reverse=reverse)
    src, _ = _tiny_mvit(yaml_text, seed=0)
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    torch.save({"epoch": 3, "model_state": state, "optimizer_state": {}, "cfg": yaml_text}, tmp_path / "sf.pyth")
    dst, _ = _tiny_mvit(yaml_text, seed=1)
    ck.load_pretrained(dst, tmp_path / "sf.pyth")
    kernel = src.patch_embed.proj.weight
    assert torch.equal(dst.patch_embed.proj.weight, kernel.flip(1) if flipped else kernel)
    assert torch.equal(dst.blocks[1].attn.rel_pos_h, src.blocks[1].attn.rel_pos_h)
    # the converter's checks apply: a key it does not understand, or no cfg to tell the channel order
    torch.save({"model_state": {**state, "blocks.0.gamma_1": torch.ones(16)}, "cfg": yaml_text}, tmp_path / "x.pyth")
    with pytest.raises(UserError, match="layer scale"):
        ck.load_pretrained(dst, tmp_path / "x.pyth")
    torch.save({"model_state": state}, tmp_path / "nocfg.pyth")
    with pytest.raises(UserError, match="convert it first: python scripts/convert_checkpoint.py"):
        ck.load_pretrained(dst, tmp_path / "nocfg.pyth")


@pytest.mark.slow
def test_load_pretrained_converts_torchvision_weights(tmp_path: Path) -> None:
    from mvit_video.models.convert import torchvision_mvit

    _, config = _tiny_mvit(_PYSLOWFAST_YAML.format(dataset="kinetics", reverse=False))
    torch.manual_seed(2)
    reference = torchvision_mvit(config).eval()
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    dst, _ = _tiny_mvit(_PYSLOWFAST_YAML.format(dataset="kinetics", reverse=False), seed=3)
    ck.load_pretrained(dst, tmp_path / "tv.pth")
    x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(dst(x), reference(x), atol=1e-4, rtol=1e-4)


def test_retention_keeps_the_latest_epochs_and_never_the_best_or_preempt(tmp_path: Path) -> None:
    for epoch in (1, 2, 3, 4, 10):
        _write(ck.epoch_checkpoint_path(tmp_path, epoch), epoch)
    _write(ck.best_checkpoint_path(tmp_path), 2)
    _write(ck.preempt_checkpoint_path(tmp_path), 4, batches_done=1)
    current = ck.epoch_checkpoint_path(tmp_path, 4)  # e.g. resumed from an earlier epoch: 10 is not the newest
    removed = ck.prune_checkpoints(tmp_path, 2, current)
    assert [p.name for p in removed] == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth",
                                         "checkpoint_epoch_00003.pyth"]
    assert sorted(p.name for p in ck.checkpoint_dir(tmp_path).iterdir()) == [
        ck.BEST_NAME, "checkpoint_epoch_00004.pyth", "checkpoint_epoch_00010.pyth", ck.PREEMPT_NAME]
    assert ck.prune_checkpoints(tmp_path, 0, current) == [] and ck.prune_checkpoints(tmp_path, None, current) == []
    assert _latest(tmp_path).name == "checkpoint_epoch_00010.pyth"  # resume still takes the latest


def test_best_checkpoint_rules_and_names(tmp_path: Path) -> None:
    history = [{"split": "val", "epoch": 1, "top1": 50.0}, {"split": "val", "epoch": 2, "top1": 70.0},
               {"split": "val_ema", "epoch": 2, "top1": 99.0}]
    assert ck.is_new_best(tmp_path, history, 1, 50.0)  # no best yet
    assert not ck.is_new_best(tmp_path, history, 3, None)  # nothing decoded: no accuracy
    _write(ck.best_checkpoint_path(tmp_path), 2)
    assert not ck.is_new_best(tmp_path, history, 3, 70.0)  # a tie keeps the earlier epoch
    assert ck.is_new_best(tmp_path, history, 3, 70.5)
    # a best from epoch 2 of a path not taken (resumed from epoch 1, whose val history ends there): replaced
    assert ck.is_new_best(tmp_path, history[:1], 2, 10.0)

    assert ck.resolve_checkpoint("best", tmp_path) == ck.best_checkpoint_path(tmp_path)
    assert ck.resolve_checkpoint("x/y.pyth", tmp_path) == Path("x/y.pyth")
    with pytest.raises(UserError, match="no checkpoint in"):
        ck.resolve_checkpoint("latest", tmp_path)
    ck.best_checkpoint_path(tmp_path).unlink()
    with pytest.raises(UserError, match="test.checkpoint=best: no .*checkpoint_best.pyth"):
        ck.resolve_checkpoint("best", tmp_path)


def test_link_or_copy_survives_the_source(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.pyth", tmp_path / "b.pyth"
    _write(src, 3)
    ck.link_or_copy(src, dst)
    src.unlink()  # retention removes the epoch checkpoint: the best stays whole
    assert ck.load(dst)["epoch"] == 3 and ck.checkpoint_epoch(dst) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pyth"]


@pytest.mark.slow
def test_fine_tuning_refuses_a_head_for_other_class_names(saved) -> None:
    """A same-size head is kept by fine-tuning: it must score the data's classes (before: loaded as it was, so
    a checkpoint's 'a, b, c' head silently scored a dataset's 'x, y, z')."""
    from mvit_video.utils.errors import ConfigError

    path, model, _ = saved
    head = model.head.projection.weight.detach().clone()

    def fine_tuned(names, reinit=False) -> MViT:
        net = MViT(tiny_config(num_classes=3))
        ck.load_pretrained(net, path)
        ck.match_pretrained_classes(net, path, names, reinit)
        return net

    assert torch.equal(fine_tuned(["a", "b", "c"]).head.projection.weight, head)
    assert torch.equal(fine_tuned(None).head.projection.weight, head)  # no names to compare: kept
    # the same classes in another order: rows follow the data's order
    assert torch.equal(fine_tuned(["c", "a", "b"]).head.projection.weight, head[[2, 0, 1]])
    with pytest.raises(ConfigError, match=r"3-class head scores other classes \('a', 'b', 'c'\) than the data's "
                                          r"class list \('a', 'b', 'x'; e.g. 'x' .*train.reinit_head=true"):
        fine_tuned(["a", "b", "x"])
    fresh = fine_tuned(["a", "b", "x"], reinit=True).head.projection.weight
    assert fresh.shape == head.shape and not torch.allclose(fresh, head)


def test_the_classifier_keys_are_what_the_model_names_its_classifier() -> None:
    """load_pretrained drops a classifier of another size by asking the network (get_classifier), not by matching
    "head" in the names (#22)."""
    assert ck.classifier_keys(MViT(tiny_config(num_classes=3))) == {"head.projection.weight",
                                                                    "head.projection.bias"}
    assert ck.classifier_keys(_Net(5)) == {"head.projection.weight", "head.projection.bias"}


def test_every_name_of_the_old_module_is_still_importable_from_the_package() -> None:
    """checkpoint.py became the package checkpoint/ (#22 item 8): its public names stay where they were."""
    old = {"BEST_NAME", "CLIP_KEYS", "DATA_CONFIG_KEYS", "FORMAT", "PREEMPT_NAME", "TEST_CONFIG_KEYS", "batches_done",
           "best_checkpoint_path", "build_from_checkpoint", "build_with_weights", "check_class_names", "check_finite",
           "check_state_dict", "checkpoint_dir", "checkpoint_epoch", "clip_settings", "data_config",
           "epoch_checkpoint_path", "epoch_checkpoints", "get_rng_state", "is_new_best", "latest_checkpoint",
           "link_or_copy", "load", "load_checkpoint_info", "load_latest", "load_model", "load_pretrained",
           "load_state_dict_strict", "make_checkpoint", "match_pretrained_classes", "plain", "preempt_checkpoint_path",
           "pretrained_state_dict", "prune_checkpoints", "remove_orphan_tmp", "resolve_checkpoint", "save",
           "set_rng_state", "strip_wrapper_prefixes", "torch_load"}  # the public names of checkpoint.py at bbd7fd2
    assert not {name for name in old if not hasattr(ck, name)}
    assert old <= set(ck.__all__)
