"""mvit_video.Predictor on real tiny videos: the same views and probabilities as evaluate, timeline, features."""

from __future__ import annotations

import json

import numpy as np
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
    from mvit_video.checkpoint import load_model
    from mvit_video.data import build_dataset
    from mvit_video.data.encode import write_video
    from mvit_video.settings import CheckpointData

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
    checkpoint_data = CheckpointData.from_run(cfg).to_dict()  # what the checkpoint of this run records: dataset ssv2, 1x1 views
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


# ------------------------------------------------------------------ inputs in memory, lists, bounded decoding


def _decoded(path) -> np.ndarray:
    """Every frame of a video file, decoded with PyAV: uint8 [T, H, W, 3] RGB."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.slow
def test_path_frames_bytes_and_lists_give_the_same_probabilities(predictor, eval_data):
    """A path, its decoded frames (numpy and torch) with its fps, its encoded bytes, and a list of paths (one
    batched call) score alike; a list returns one Prediction per video, in order."""
    paths = [eval_data / "videos" / f"v{i}.mp4" for i in range(3)]
    single = [predictor.predict(p, topk=3) for p in paths]
    frames = _decoded(paths[0])
    assert frames.shape == (20, 40, 48, 3)
    for same in (predictor.predict(frames, fps=30.0, topk=3),
                 predictor.predict(torch.from_numpy(frames), fps=30, topk=3),
                 predictor.predict(paths[0].read_bytes(), topk=3)):
        assert torch.allclose(same.probs, single[0].probs, atol=1e-6)
        assert same.class_indices == single[0].class_indices
        assert same.duration == pytest.approx(single[0].duration) and same.fps == pytest.approx(30.0)
    assert predictor.predict(frames, fps=30.0).video == "<frames>"
    batched = predictor.predict([str(p) for p in paths], topk=3)
    assert isinstance(batched, list) and [b.video for b in batched] == [str(p) for p in paths]
    for b, s in zip(batched, single):
        assert torch.allclose(b.probs, s.probs, atol=1e-6) and b.class_indices == s.class_indices
    assert torch.allclose(predictor.features(frames, fps=30.0), predictor.features(paths[0]), atol=1e-6)
    assert len(predictor.timeline(frames, fps=30.0, window=0.5, views="1x1")) == 2


def test_bad_in_memory_inputs_are_one_line_errors(predictor, eval_data):
    frames = _decoded(eval_data / "videos" / "v0.mp4")
    cases = [
        (lambda: predictor.predict(frames), "need their frame rate: predict\\(frames, fps=30.0\\)"),
        (lambda: predictor.predict(frames, fps=0), "fps must be a positive"),
        (lambda: predictor.predict(frames.astype(np.float32), fps=30), "must be uint8"),
        (lambda: predictor.predict(frames[..., 0], fps=30), r"shape \[T, H, W, 3\].*\[20, 40, 48\]"),
        (lambda: predictor.predict(torch.zeros(0, 8, 8, 3, dtype=torch.uint8), fps=30), r"shape \[T, H, W, 3\]"),
        (lambda: predictor.predict(b"not a video at all" * 10), "<bytes>: cannot decode the bytes as a video"),
        (lambda: predictor.predict(b""), "empty bytes"),
        (lambda: predictor.predict(eval_data / "videos" / "v0.mp4", fps=30), "fps= is for decoded frames"),
        (lambda: predictor.predict(42), "cannot predict on a int: give a video path"),
        (lambda: predictor.predict([eval_data / "videos" / "v0.mp4", eval_data / "videos" / "garbage.mp4"]),
         "garbage.mp4"),
    ]
    for call, message in cases:
        with pytest.raises(UserError, match=message):
            call()


def test_views_must_be_two_sensible_integers(predictor, tiny_checkpoint):
    from mvit_video import Predictor
    from mvit_video.predict import MAX_TEMPORAL_VIEWS, parse_views

    assert parse_views("5x1") == (5, 1) and parse_views((2, 3)) == (2, 3) and parse_views([np.int64(3), 1]) == (3, 1)
    for bad in [(1.5, 1), (True, True), (2.0, 1), "1.5x1", "5x", "5x1x1", 5, None]:
        with pytest.raises(UserError, match="two integers"):
            parse_views(bad)
    for bad in ["2000x1", f"{MAX_TEMPORAL_VIEWS + 1}x1", "0x1", "2x2"]:
        with pytest.raises(UserError, match=f"need 1 <= K <= {MAX_TEMPORAL_VIEWS}"):
            parse_views(bad)
    with pytest.raises(UserError, match="two integers"):
        Predictor.from_checkpoint(tiny_checkpoint, device="cpu", views=(1.5, 1))
    with pytest.raises(UserError, match="need 1 <= K"):
        predictor.predict("unused.mp4", views="2000x1")


def test_large_frames_are_resized_while_decoding_to_the_same_views(predictor, eval_data, monkeypatch):
    """Frames over the test short side are decoded one at a time here (a tiny budget) and resized at once: the
    views are bit-identical to the dataset's one-decode path (clips.views), which holds every frame at full size."""
    from mvit_video import predict
    from mvit_video.data import clips
    from mvit_video.data.decoding import open_video

    calls = []
    spec = predictor.spec("2x3")
    with open_video(eval_data / "videos" / "v1.mp4") as reader:
        expected = clips.views(reader, spec)
        monkeypatch.setattr(predict, "DECODE_BUDGET_BYTES", 1)
        get_frames = reader.get_frames
        monkeypatch.setattr(reader, "get_frames", lambda idx: calls.append(len(idx)) or get_frames(idx))
        got = predict._bounded_views(reader, spec)
    assert torch.equal(got, expected)
    assert calls and set(calls) == {1}  # never more than one full-size frame decoded at a time
