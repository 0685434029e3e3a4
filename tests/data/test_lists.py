"""The one reader of list and class files: PySlowFast lists, classes.txt, SSv2's labels.json and split files."""

from __future__ import annotations

import json

import pytest

from mvit_video.data.lists import read_class_names, read_list_file, read_ssv2_labels, read_ssv2_split
from mvit_video.utils.errors import UserError


def test_class_names_line_i_is_class_i(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\ufeffcat \r\ndog\n\n\n", encoding="utf-8")  # BOM, CRLF, trailing blank lines
    assert read_class_names(path) == ["cat", "dog"]
    path.write_text("cat\n\ndog\n")  # a blank line would shift every class after it
    with pytest.raises(UserError, match=r"classes.txt:2: blank class name"):
        read_class_names(path)
    assert read_class_names(tmp_path / "none.txt", required=False) is None
    with pytest.raises(UserError, match=r"none.txt: classes file not found"):
        read_class_names(tmp_path / "none.txt")
    path.write_text("\n")
    with pytest.raises(UserError, match="no class names"):
        read_class_names(path)


def test_list_file_bare_paths_only_when_labels_are_optional(tmp_path):
    path = tmp_path / "videos.txt"
    path.write_text("a b.mp4\nc.mp4 2\n")
    assert read_list_file(path, labels_optional=True) == (["a b.mp4", "c.mp4"], [-1, 2])
    with pytest.raises(UserError, match=r"videos.txt:1: label 'b.mp4' is not an integer"):
        read_list_file(path)
    with pytest.raises(UserError, match=r"nope.txt: list file not found \(check data.path_to_data_dir\)"):
        read_list_file(tmp_path / "nope.txt")


def test_ssv2_labels_and_splits(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"Pushing something": "1", "Holding something": "0"}))
    assert read_ssv2_labels(labels) == ["Holding something", "Pushing something"]
    split = tmp_path / "train.json"
    split.write_text(json.dumps([{"id": 7, "template": "Pushing [something]"}, {"id": "8", "template": "Holding [x]"}]))
    with pytest.raises(UserError, match=r"train.json: entry 1 \(id 8\): template class 'Holding x' is not in"):
        read_ssv2_split(split, read_ssv2_labels(labels))
    split.write_text(json.dumps([{"id": 7, "template": "Pushing [something]"}]))
    assert read_ssv2_split(split, read_ssv2_labels(labels)) == [("7", 1)]
    assert read_ssv2_split(split, None) == [("7", None)]  # the unlabelled test set: ids only
    for bad, why in [({"a": "0", "b": "0"}, "id 0 used by both"), ({"a": "1"}, "must be 0..0 without gaps"),
                     ({"a": "x"}, "non-integer id"), ([], "expected a non-empty object")]:
        labels.write_text(json.dumps(bad))
        with pytest.raises(UserError, match=why):
            read_ssv2_labels(labels)
    with pytest.raises(UserError, match=r"missing.json: file not found \(check data.path_to_data_dir\)"):
        read_ssv2_labels(tmp_path / "missing.json", missing_hint=" (check data.path_to_data_dir)")
