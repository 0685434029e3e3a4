"""Kinetics/SSv2 datasets: list parsing errors, train/test items, decode-once views, bad videos."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import make_cfg

from mvit_video.data import build_dataset
from mvit_video.data.clips import open_reader, view_indices, views_of_frames
from mvit_video.data.lists import read_list_file
from mvit_video.data.sampling import concat_indices
from mvit_video.utils.errors import ConfigError, UserError

T, CROP = 4, 32


def _cfg(list_dir, data="kinetics", aug="none", **over):
    base = {
        "data.path_to_data_dir": str(list_dir),
        "data.num_frames": T,
        "data.sampling_rate": 2,
        "data.train_crop_size": CROP,
        "data.test_crop_size": CROP,
        "data.train_jitter_scales": [32, 40],
        "test.num_ensemble_views": 2,
        "test.num_spatial_crops": 3,
    }
    base.update(over)
    return make_cfg(data, aug, base)


@pytest.mark.parametrize(
    "line, why",
    [("only_a_path.mp4", "expected"), ("a.mp4 cat", "not an integer"), ("a.mp4 -1", "negative")],
)
def test_malformed_line_names_file_and_line(tmp_path, line, why):
    (tmp_path / "train.csv").write_text(f"x.mp4 0\n\n{line}\n")
    with pytest.raises(UserError, match=rf"train.csv:3: .*{why}"):
        build_dataset(_cfg(tmp_path), "train")


def test_list_parsing_separator_prefix_and_spaces(tmp_path):
    (tmp_path / "val.csv").write_text("dir with space/a b.mp4 3\nc.mp4 1\n")
    assert read_list_file(str(tmp_path / "val.csv")) == (["dir with space/a b.mp4", "c.mp4"], [3, 1])
    (tmp_path / "test.csv").write_text("a.mp4,2\n/abs/b.mp4,0\n")
    ds = build_dataset(_cfg(tmp_path, **{"data.path_label_separator": ",", "data.path_prefix": "/videos"}), "test")
    assert ds.full_paths == ["/videos/a.mp4", "/abs/b.mp4"] and ds.paths == ["a.mp4", "/abs/b.mp4"]
    assert ds.labels == [2, 0] and ds.num_classes == 3 and ds.class_names is None


@pytest.mark.slow
def test_missing_list_and_classes_check(tmp_path):
    with pytest.raises(UserError, match="test.csv: list file not found"):
        build_dataset(_cfg(tmp_path), "test")
    with pytest.raises(ConfigError, match="data.path_to_data_dir"):
        build_dataset(_cfg(""), "test")
    (tmp_path / "test.csv").write_text("a.mp4 2\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(UserError, match="label 2 .* 2 classes"):
        build_dataset(_cfg(tmp_path), "test")


@pytest.mark.slow
def test_train_item_repeated_augmentation(kinetics_list_dir):
    torch.manual_seed(0)
    ds = build_dataset(_cfg(kinetics_list_dir, "kinetics", "mvitv2", **{"data.num_sample": 2}), "train")
    assert len(ds) == 4 and ds.num_classes == 2
    item = ds[1]
    assert item["video"].shape == (2, 3, T, CROP, CROP) and item["video"].dtype == torch.float32
    assert item["label"] == 1 and item["index"] == 1 and item["bad_paths"] == []
    assert not torch.equal(item["video"][0], item["video"][1])  # two independent augmentations


def test_kinetics_train_frames_go_to_the_first_jitter_scale(kinetics_list_dir):
    """PySlowFast's Kinetics decoder scales frames to short side TRAIN_JITTER_SCALES[0] before augmentation; its
    SSv2 reads the JPEGs as they are."""
    ds = build_dataset(_cfg(kinetics_list_dir, "kinetics", "mvitv2"), "train")
    assert ds.train_transform.decode_short_side == 32


@pytest.mark.slow
@pytest.mark.parametrize("crops, decoder", [(1, "decord"), (3, "decord"), (3, "pyav")])
def test_test_views_decode_once_equals_per_view(kinetics_list_dir, crops, decoder):
    over = {"test.num_ensemble_views": 3, "test.num_spatial_crops": crops, "data.decoder": decoder}
    cfg = _cfg(kinetics_list_dir, **over)
    once = build_dataset(cfg, "test")
    for i in range(len(once)):
        a = once[i]
        # the baseline from the public pieces: each view's frames decoded on their own, then the same crops
        with open_reader(once.full_paths[i], once.spec) as reader:
            parts = [reader.get_frames(idx) for idx in view_indices(once.spec, reader.num_frames, reader.fps)]
        per_view = views_of_frames(torch.cat(parts), concat_indices([len(p) for p in parts]), once.spec)
        assert a["ok"] and a["views"].shape == (3 * crops, 3, T, CROP, CROP)
        assert torch.equal(a["views"], per_view)
        assert a["path"] == once.paths[i] and a["label"] == once.labels[i] and a["index"] == i


def test_view_order_is_temporal_major(kinetics_list_dir):
    ds = build_dataset(_cfg(kinetics_list_dir, **{"test.num_ensemble_views": 2}), "test")
    views = ds[1]["views"]  # b.mp4, 90 frames: the two temporal views differ
    assert views.shape[0] == 6
    assert not torch.equal(views[0], views[3])  # temporal 0 vs 1, same spatial crop
    assert not torch.equal(views[0], views[1])  # spatial 0 vs 1, same temporal view


def _bad_list(video_dir, tmp_path, good_first: bool = False) -> str:
    data = (video_dir / "a.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    bad = [video_dir / "empty.mp4", video_dir / "garbage.mp4", tmp_path / "truncated.mp4", tmp_path / "missing.mp4"]
    rows = [f"{p} 0" for p in bad]
    rows.insert(0 if good_first else len(rows), f"{video_dir / 'b.mp4'} 1")
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return str(tmp_path)


def test_bad_videos_are_replaced_and_reported_in_training(video_dir, tmp_path, caplog):
    caplog.set_level("DEBUG", logger="mvit_video.data.base")  # workers note bad paths at debug level only
    ds = build_dataset(_cfg(_bad_list(video_dir, tmp_path), **{"data.max_bad_retries": 50}), "train")
    for index in range(4):  # the four bad ones
        item = ds[index]
        assert item["label"] == 1 and item["video"].shape == (2, 3, T, CROP, CROP)  # kinetics: num_sample 2
        assert ds.full_paths[index] in item["bad_paths"]
        assert item["index"] == 4 and item["bad_paths"][-1] != ds.full_paths[4]
    assert ds[4]["bad_paths"] == []
    warned = [r.getMessage() for r in caplog.records if "unreadable video" in r.getMessage()]
    assert len(warned) == len(set(warned)) and len(warned) >= 4  # once per path


def test_too_many_bad_videos_in_a_row(video_dir, tmp_path):
    ds = build_dataset(_cfg(_bad_list(video_dir, tmp_path), **{"data.max_bad_retries": 0}), "train")
    with pytest.raises(UserError, match="max_bad_retries=0"):
        ds[0]


def test_bad_videos_in_testing_are_not_ok(video_dir, tmp_path):
    ds = build_dataset(_cfg(_bad_list(video_dir, tmp_path, good_first=True)), "val")
    items = [ds[i] for i in range(len(ds))]
    assert [it["ok"] for it in items] == [True, False, False, False, False]
    for it in items[1:]:
        assert it["views"].shape == (0, 3, T, CROP, CROP)
    assert items[0]["views"].shape == (6, 3, T, CROP, CROP)


def _ssv2_dir(video_dir, tmp_path):
    labels = {"Pushing something from left to right": "0", "Pushing something from right to left": "1"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    entries = [
        {"id": "11", "label": "pushing a cup from left to right", "template": "Pushing [something] from left to right"},
        {"id": "12", "label": "pushing a pen from right to left", "template": "Pushing [something] from right to left"},
    ]
    (tmp_path / "train.json").write_text(json.dumps(entries))
    (tmp_path / "validation.json").write_text(json.dumps(entries[::-1]))
    for e in entries:
        shutil.copy(video_dir / "c.webm", tmp_path / f"{e['id']}.webm")
    return tmp_path


def test_ssv2_official_json(video_dir, tmp_path):
    d = _ssv2_dir(video_dir, tmp_path)
    # random_flip is ignored: SSv2 never flips
    cfg = _cfg(d, "ssv2", "mvitv2", **{"data.random_flip": True, "test.num_ensemble_views": 1})
    train = build_dataset(cfg, "train")
    assert train.labels == [0, 1] and train.num_classes == 2
    assert train.class_names == ["Pushing something from left to right", "Pushing something from right to left"]
    assert train.train_transform.flip is None and train.spec.segment_sampling
    assert train.train_transform.spec.bgr_grey  # PySlowFast's BGR frames: RandAugment's grey weights swapped
    assert train[0]["video"].shape == (1, 3, T, CROP, CROP)
    val = build_dataset(cfg, "val")
    assert val.paths == ["12.webm", "11.webm"] and val.labels == [1, 0]
    assert val[0]["views"].shape == (3, 3, T, CROP, CROP)  # ssv2 preset: 1 x 3 views
    # segment sampling of a 48-frame video with 4 frames: segments of 47/4 = 11.75 -> bounds (0,12) (12,24)
    # (24,35) (35,47), the middle of each
    assert view_indices(val.spec, 48, 30.0) == [[6, 18, 29, 41]]


def test_ssv2_samples_pyslowfast_30fps_frame_grid(video_dir, tmp_path):
    """PySlowFast samples SSv2 from JPEGs extracted at 30 fps (ffmpeg -r 30): a 12 fps webm of 20 frames is 50
    grid frames, and the segment indices pick the frames that extraction wrote (frame ids in the pixels)."""
    from mvit_video.data.encode import write_video
    from mvit_video.data.sampling import frame_grid

    d = _ssv2_dir(video_dir, tmp_path)
    frames = np.zeros((20, 32, 48, 3), np.uint8)
    for t in range(20):
        frames[t] = 8 * t
    for vid in ("11", "12"):
        write_video(d / f"{vid}.webm", frames, fps=12.0)
    cfg = _cfg(d, "ssv2", "none", **{"test.num_ensemble_views": 1, "test.num_spatial_crops": 1})
    val = build_dataset(cfg, "val")
    with open_reader(str(d / "12.webm"), val.spec) as reader:
        assert (reader.num_frames, reader.fps) == (50, 30.0)
    idx = view_indices(val.spec, 50, 30.0)[0]
    assert idx == [6, 18, 30, 43]  # segments of 49/4 on the 50-frame grid
    views = val[0]["views"]  # [1,3,T,32,32]
    ids = (views[0, 0, :, 16, 16] * 0.225 + 0.45) * 255 / 8
    assert ids.round().int().tolist() == [frame_grid(20, 12.0)[i] for i in idx] == [2, 7, 12, 17]
    assert view_indices(val.spec, 20, 12.0)[0] != idx  # the webm's own frames would be a different grid


def test_ssv2_one_crop_test_view_is_left_at_crop_size(video_dir, tmp_path):
    """PySlowFast's Ssv2 test: short side = TEST_CROP_SIZE, spatial index view % NUM_SPATIAL_CROPS = 0 (left)."""
    cfg = _cfg(_ssv2_dir(video_dir, tmp_path), "ssv2", "none", **{"test.num_ensemble_views": 1,
                                                                  "test.num_spatial_crops": 1})  # fmt: skip
    val = build_dataset(cfg, "val")
    frames = torch.arange(64, dtype=torch.uint8).view(1, 1, 64, 1).expand(2, 40, 64, 3).contiguous()  # value = x
    views = views_of_frames(frames, [range(2)], val.spec)
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(32, 51), mode="bilinear", align_corners=False)
    ref = (x[:, :, :32, :32] / 255.0 - 0.45) / 0.225
    torch.testing.assert_close(views[0].permute(1, 0, 2, 3), ref)


@pytest.mark.slow
def test_ssv2_bad_json(tmp_path):
    (tmp_path / "labels.json").write_text('{"a": "0"}')
    (tmp_path / "train.json").write_text('[{"id": "1", "template": "b"}]')
    with pytest.raises(UserError, match="train.json: entry 0 .* not in labels.json"):
        build_dataset(_cfg(tmp_path, "ssv2"), "train")
    (tmp_path / "train.json").write_text("[{")
    with pytest.raises(UserError, match="train.json:1: invalid JSON"):
        build_dataset(_cfg(tmp_path, "ssv2"), "train")


def test_unknown_dataset(tmp_path):
    with pytest.raises(ConfigError, match="data.dataset"):
        build_dataset(_cfg(tmp_path, **{"data.dataset": "ucf"}), "train")


def test_keyed_train_items_depend_only_on_seed_epoch_and_index(kinetics_list_dir, video_dir, tmp_path):
    """dataset[(seed, epoch, index)] (what the training sampler yields) draws every random number, the replacement
    of a bad video included, from those three numbers: not from the process's RNG state (worker, rank, resume)."""
    import random

    lists = tmp_path / "lists"
    lists.mkdir()
    good = (kinetics_list_dir / "train.csv").read_text()
    (lists / "train.csv").write_text(good + f"{video_dir / 'garbage.mp4'} 1\n")
    ds = build_dataset(_cfg(lists, "kinetics", "mvitv2", **{"data.num_sample": 2}), "train")
    torch.manual_seed(1)
    random.seed(1)
    a = ds[(0, 3, 1)]
    state = torch.random.get_rng_state()
    torch.manual_seed(2)
    random.seed(2)
    b = ds[(0, 3, 1)]
    assert torch.equal(a["video"], b["video"])
    assert not torch.equal(a["video"][0], a["video"][1])  # the two clips still differ
    assert not torch.equal(a["video"], ds[(0, 4, 1)]["video"])  # another epoch, other augmentation
    torch.manual_seed(1)
    ds[(0, 3, 1)]
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG stream does not move
    bad = [ds[(0, 3, 4)] for _ in range(2)]  # garbage.mp4: replaced by the same video both times
    assert bad[0]["bad_paths"] == [str(video_dir / "garbage.mp4")]
    assert bad[0]["index"] == bad[1]["index"] != 4 and torch.equal(bad[0]["video"], bad[1]["video"])


def test_a_split_list_set_by_key_replaces_only_that_split(kinetics_list_dir, tmp_path):
    """data.val_list (README: e.g. the train_clean.csv of check_dataset --write-clean), relative to the data folder:
    the val split reads it; train and test keep <data_dir>/<split>.csv."""
    from tiny import kinetics_cfg

    data_dir = tmp_path / "lists"
    shutil.copytree(kinetics_list_dir, data_dir)
    clean = (data_dir / "val.csv").read_text().splitlines()[:2]
    (data_dir / "val_clean.csv").write_text("\n".join(clean) + "\n")
    run = kinetics_cfg(data_dir, **{"data.val_list": "val_clean.csv"})
    assert build_dataset(run, "val").paths == [line.rsplit(" ", 1)[0] for line in clean]
    assert len(build_dataset(run, "test").paths) == len((data_dir / "test.csv").read_text().splitlines()) > 2
