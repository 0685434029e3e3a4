"""mvit_video.Predictor on real tiny videos: the same views and probabilities as evaluate, timeline, features."""

from __future__ import annotations

import json

import pytest
import torch

from mvit_video.config import build_config, compose
from mvit_video.utils.errors import UserError


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    from mvit_video import Predictor

    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu")


@pytest.mark.slow
def test_views_match_the_test_dataset(predictor, eval_overrides):
    """Predictor samples exactly the views evaluate scores (same indices, crops, normalisation)."""
    from mvit_video.data import build_dataset
    from mvit_video.data.decoding import open_video

    dataset = build_dataset(build_config(compose(eval_overrides)), "test")
    item = dataset[3]
    with open_video(dataset.full_paths[3]) as reader:
        views = predictor.views(reader, views="2x1")
    assert views.shape == item["views"].shape
    assert (views - item["views"]).abs().max() < 1e-5


@pytest.mark.slow
def test_predictor_matches_evaluate_probabilities(predictor, tmp_path, eval_data, eval_overrides, tiny_checkpoint,
                                                  class_names):
    from mvit_video.checkpoint import load_model
    from mvit_video.eval.testing import test

    test(build_config(compose(eval_overrides + [f"output_dir={tmp_path}"])), load_model(tiny_checkpoint), class_names,
         count_flops=False)  # 2x1 views
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        pred = predictor.predict(eval_data / "videos" / row["video"], views="2x1", topk=3)
        assert pred.class_indices == [c for c, _ in row["topk"]]
        assert [p for _, p in pred.topk] == pytest.approx([p for _, p in row["topk"]], abs=2e-6)
        assert [n for n, _ in pred.topk] == [class_names[c] for c in pred.class_indices] == row["topk_names"]
        assert float(pred.probs.sum()) == pytest.approx(1.0, abs=1e-5)


def test_settings_come_from_the_checkpoint_unless_overridden(tiny_checkpoint, eval_data, class_names):
    from mvit_video import Predictor

    default = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    # views: the test views the checkpoint records (eval_overrides' 2x1)
    assert default.settings == {"num_frames": 4, "sampling_rate": 2, "crop_size": 32, "views": (2, 1)}
    assert "all from the checkpoint" in default.describe()
    custom = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", num_frames=8, views="1x3")
    assert "overridden: num_frames, views" in custom.describe()
    pred = custom.predict(eval_data / "videos" / "v0.mp4", topk=1)
    assert pred.views == (1, 3) and len(pred.topk) == 1 and pred.topk[0][0] in class_names
    from mvit_video.data.decoding import open_video

    with open_video(eval_data / "videos" / "v0.mp4") as reader:
        assert custom.views(reader).shape == (3, 3, 8, 32, 32)  # 1x3 views of 8 frames
    with pytest.raises(UserError, match="views must look like 5x1"):
        default.predict(eval_data / "videos" / "v0.mp4", views="five")


def test_timeline_and_features(predictor, eval_data):
    video = eval_data / "videos" / "v2.mp4"
    windows = predictor.timeline(video, window=0.25, views="1x1", topk=2)
    # 20 frames at 30 fps in windows of 0.25 s (8 frames): 0-8, 8-16, 16-20
    assert [(round(w.start, 3), round(w.end, 3)) for w in windows] == [(0.0, 0.267), (0.267, 0.533), (0.533, 0.667)]
    assert all(len(w.topk) == 2 and w.topk[0][1] >= w.topk[1][1] for w in windows)
    for bad in (float("inf"), float("nan"), 0.0, -2.0):
        with pytest.raises(UserError, match="window must be a positive, finite"):
            predictor.timeline(video, window=bad)

    emb = predictor.features(video, views="2x1")
    model = predictor.model
    assert emb.shape == (model.num_features,)
    from mvit_video.data.decoding import open_video

    with open_video(video) as reader, torch.no_grad():
        views = predictor.views(reader, views="2x1")
        assert torch.allclose(emb, model.forward_features(views).mean(0), atol=1e-6)
        # the embedding is the head's input: the head of the per-view features gives the per-view logits
        assert torch.allclose(model.head(model.forward_features(views)), model(views), atol=1e-6)


def test_bad_video_is_a_user_error(predictor, eval_data):
    with pytest.raises(UserError, match="garbage.mp4"):
        predictor.predict(eval_data / "videos" / "garbage.mp4")


@pytest.mark.slow
def test_ssv2_checkpoint_samples_with_the_ssv2_protocol(tmp_path, eval_overrides, tiny_checkpoint):
    """An SSv2 checkpoint's views are the SSv2 test dataset's (segment sampling, the 30 fps frame grid, short side
    = crop, the left 1-crop view), not Kinetics' (linspace clips, center crop at train_jitter_scales[0])."""
    import numpy as np

    from mvit_video import Predictor
    from mvit_video.checkpoint import data_config, load_model
    from mvit_video.data import build_dataset
    from mvit_video.data.encode import write_video

    frames = np.zeros((20, 40, 56, 3), np.uint8)
    frames[:] = np.arange(56, dtype=np.uint8).reshape(1, 1, 56, 1) * 4  # x in the pixels: crops can be told apart
    for t in range(20):
        frames[t, :8] = 10 * t  # frame id in the top rows
    write_video(tmp_path / "v.webm", frames, fps=12.0)  # SSv2's own rate: 20 frames = 50 on the 30 fps grid
    (tmp_path / "test.csv").write_text("v.webm 1\n")
    cfg = build_config(compose(eval_overrides + [
        "data.dataset=ssv2", "data.frame_grid_fps=30", f"data.path_to_data_dir={tmp_path}",
        f"data.path_prefix={tmp_path}", "test.num_ensemble_views=1", "test.num_spatial_crops=1"]))
    expected = build_dataset(cfg, "test")[0]["views"]
    model = load_model(tiny_checkpoint)
    checkpoint_data = data_config(cfg)  # what the checkpoint of this run records: dataset ssv2, 1x1 views
    predictor = Predictor(model, checkpoint_data, device="cpu")
    old = {k: v for k, v in checkpoint_data.items() if k not in ("frame_grid_fps", "num_ensemble_views",
                                                                 "num_spatial_crops")}
    old_checkpoint = Predictor(model, old, device="cpu", views="1x1")  # no frame_grid_fps: SSv2's 30 fps
    assert torch.equal(old_checkpoint.dataset([str(tmp_path / "v.webm")])[0]["views"], expected)
    assert predictor.spec().segment_sampling and predictor.spec().one_crop_index == 0
    got = predictor.dataset([str(tmp_path / "v.webm")])[0]["views"]  # what extract batches
    assert torch.equal(got, expected)
    with torch.no_grad():
        probs = torch.softmax(model(expected).float(), dim=-1).mean(0)
    assert torch.allclose(predictor.predict(tmp_path / "v.webm").probs, probs, atol=1e-6)
    kinetics = Predictor(model, {**checkpoint_data, "dataset": "kinetics"}, device="cpu")
    assert not torch.equal(kinetics.dataset([str(tmp_path / "v.webm")])[0]["views"], expected)
