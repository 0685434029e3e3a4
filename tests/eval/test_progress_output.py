"""Progress output in logs (not a terminal): extract logs as train does, without a tqdm bar; progress lines come by
time as well as by count."""

from __future__ import annotations

import logging
import re

import pytest

from mvit_video.utils.progress import Progress


@pytest.fixture
def restore_logging():
    """cli.setup_logging adds handlers to the root logger; take them off again after the test."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for h in [h for h in root.handlers if h not in before]:
        root.removeHandler(h)
        h.close()
    root.setLevel(level)


@pytest.mark.slow
def test_extract_into_a_log_has_no_bar_and_trains_format(tmp_path, eval_data, tiny_checkpoint, capsys,
                                                         restore_logging):
    from mvit_video.extract import main

    assert main(["--checkpoint", str(tiny_checkpoint), "--list", str(eval_data / "test.csv"), "--prefix",
                 str(eval_data / "videos"), "--out", str(tmp_path / "f"), "--views", "1x1", "--batch-size", "1",
                 "--workers", "0", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "batch/s" not in err and "it/s" not in err  # no tqdm bar written into the log
    logged = [line for line in err.splitlines() if line.startswith("[")]
    assert logged and all(re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO\] ", line) for line in logged)
    assert any("clips of 4 frames" in line for line in logged)  # the Predictor's settings line, as train logs


def test_progress_lines_come_by_time_as_well_as_by_count(caplog):
    log = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        quiet = Progress(10, "extract", log, bar=False, log_every=100, log_every_s=1e9)
        for _ in range(5):
            quiet.update(1)
        assert caplog.records == []
        timed = Progress(10, "extract", log, bar=False, log_every=100, log_every_s=0.0)
        for _ in range(3):
            timed.update(2)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["extract: 2/10 videos", "extract: 4/10 videos",
                                                                      "extract: 6/10 videos"]
