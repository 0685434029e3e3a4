"""Pretrained weights by name ("torchvision:mvit_v2_s"): read through torchvision's weights API from a pre-filled
cache (no network here), converted for training and for the Predictor; offline without the file, one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_convert import random_weights

from mvit_video.checkpoint import named_checkpoint
from mvit_video.models.convert import torchvision_config, torchvision_mvit, torchvision_weights_file
from mvit_video.utils.errors import UserError

NAME = "torchvision:mvit_v2_s"
FILE = "mvit_v2_s-ae3be167.pth"  # the file name of MViT_V2_S_Weights.KINETICS400_V1.url, as torchvision caches it


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No download ever leaves this machine: every HTTP(S) request goes to a closed local port."""
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """torchvision's mvit_v2_s (all 16 blocks) with random weights, built for 4 x 32^2 inputs to stay fast."""
    with torch.device("meta"):
        reference = torchvision_mvit(torchvision_config(4, 32))
    return random_weights(reference)


@pytest.fixture
def torch_home(tmp_path, monkeypatch, source) -> Path:
    """A TORCH_HOME whose hub cache holds the weights file under the exact name torchvision expects."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(source, cache / FILE)
    return tmp_path / "torch"


@pytest.mark.slow
def test_named_weights_load_from_torchvisions_cache_for_the_predictor(torch_home, source, tmp_path):
    """Predictor.from_checkpoint("torchvision:mvit_v2_s"): the Kinetics-400 names, the 16x4 protocol, and logits
    equal to torchvision's own network holding the same weights."""
    from mvit_video import Predictor

    assert torchvision_weights_file(NAME) == torch_home / "hub" / "checkpoints" / FILE
    predictor = Predictor.from_checkpoint(NAME, device="cpu", views="1x1")
    assert len(predictor.class_names) == 400 and predictor.class_names[0] == "abseiling"
    assert predictor.settings == {"num_frames": 4, "sampling_rate": 4, "crop_size": 32, "views": (1, 1)}
    frames = np.random.default_rng(0).integers(0, 255, (40, 36, 48, 3), dtype=np.uint8)
    pred = predictor.predict(frames, fps=30.0, topk=3)
    with torch.device("meta"):
        reference = torchvision_mvit(torchvision_config(4, 32))
    reference.load_state_dict(source, assign=True)
    reference.eval()
    from mvit_video.data.decoding import FramesReader

    views = predictor.views(FramesReader(torch.from_numpy(frames), 30.0), views="1x1")
    with torch.no_grad():
        expected = torch.softmax(reference(views), dim=-1).mean(0)
    assert torch.allclose(pred.probs, expected, atol=1e-5)
    assert named_checkpoint(NAME)["source"]["weights"] == "MViT_V2_S_Weights.KINETICS400_V1"


@pytest.mark.slow
def test_train_checkpoint_file_path_accepts_the_name(torch_home, source, tmp_path):
    """train.checkpoint_file_path=torchvision:mvit_v2_s passes the config's path check and load_pretrained fills
    the MViTv2-S preset (model=mvit_s) with the converted weights; the 2-class head stays re-initialised."""
    from mvit_video.checkpoint import load_pretrained
    from mvit_video.config import build_config, compose
    from mvit_video.models import build_model
    from mvit_video.models.convert import from_torchvision

    run = build_config(compose(["model=mvit_s", "data.num_frames=4", "data.train_crop_size=32",
                                "data.test_crop_size=32", "model.num_classes=2", f"train.checkpoint_file_path={NAME}",
                                f"output_dir={tmp_path / 'run'}"]), check_paths=True)
    model = build_model(run.model)
    head = model.head.projection.weight.detach().clone()
    load_pretrained(model, run.train.checkpoint_file_path)
    converted = from_torchvision(source)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in converted.items() if not k.startswith("head"))
    assert torch.equal(own["head.projection.weight"], head)


def test_offline_without_the_file_is_one_line_naming_url_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    target = tmp_path / "empty" / "hub" / "checkpoints" / FILE
    with pytest.raises(UserError) as e:
        named_checkpoint(NAME)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{NAME}: cannot download https://download.pytorch.org/models/{FILE} (")
    assert message.endswith(f"put it at {target} (torchvision's cache: $TORCH_HOME/hub/checkpoints)")
    with pytest.raises(UserError, match=r"unknown pretrained weights \(known: torchvision:mvit_v2_s\)"):
        named_checkpoint("torchvision:mvit_v9")


def test_a_broken_cached_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "t"))
    cache = tmp_path / "t" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / FILE).write_bytes(b"half a download")
    with pytest.raises(UserError, match=f"cannot read {cache / FILE} .*; delete it to download it again"):
        named_checkpoint(NAME)


def test_old_import_path_of_named_checkpoint_still_works_with_a_deprecation_warning():
    """named_checkpoint moved from models.convert to mvit_video.checkpoint (#22: the format sits above models/)."""
    import importlib

    convert = importlib.import_module("mvit_video.models.convert")
    convert.__dict__.pop("named_checkpoint", None)  # an earlier read cached it (one warning per process)
    with pytest.warns(DeprecationWarning, match="use mvit_video.checkpoint.named_checkpoint"):
        assert convert.named_checkpoint is named_checkpoint
