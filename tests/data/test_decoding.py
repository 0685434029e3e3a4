"""decord and PyAV readers: same frames for the same indices, frame-accurate seeking, clear errors on bad files."""

from __future__ import annotations

import pytest
import torch

from mvit_video.data.decoding import HAS_DECORD, PyAVReader, VideoDecodeError, open_video
from mvit_video.utils.errors import UserError

DECODERS = ["decord", "pyav"] if HAS_DECORD else ["pyav"]


def _closest(decoded: torch.Tensor, source, i: int) -> tuple[int, float]:
    """(index among source frames i-1, i, i+1 closest to `decoded`, its error / the next-best error)."""
    errs = {j: (decoded.float() - torch.from_numpy(source[j]).float()).abs().mean().item()
            for j in (i - 1, i, i + 1) if 0 <= j < len(source)}
    ranked = sorted(errs.values())
    return min(errs, key=errs.get), ranked[0] / ranked[1]


@pytest.mark.parametrize("name", ["a.mp4", "b.mp4", "c.webm", "short.mp4"])  # every shared fixture video
@pytest.mark.parametrize("decoder", DECODERS)
def test_metadata_and_frame_accuracy(indexed_videos, name, decoder):
    path, source, fps = indexed_videos[name]
    n = len(source)
    reader = open_video(path, decoder)
    assert reader.num_frames == n
    assert reader.fps == pytest.approx(fps)
    assert reader.duration == pytest.approx(n / fps)
    idx = [n - 1, 0, n // 2, n // 2, 1, n - 2]  # unsorted, with a repeat: order and repeats are kept
    frames = reader.get_frames(idx)
    assert frames.dtype == torch.uint8 and frames.shape == (len(idx), 64, 80, 3)
    for k, i in enumerate(idx):
        best, ratio = _closest(frames[k], source, i)
        assert best == i and ratio < 0.5, (name, decoder, i, best, ratio)  # clearly frame i, not a neighbour


@pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
@pytest.mark.parametrize("name", ["a.mp4", "b.mp4", "c.webm"])
def test_decord_and_pyav_agree(indexed_videos, name):
    path, source, _ = indexed_videos[name]
    idx = list(range(0, len(source), 7)) + [len(source) - 1]
    a = open_video(path, "decord").get_frames(idx).float()
    b = open_video(path, "pyav").get_frames(idx).float()
    assert (a - b).abs().mean().item() < 1.0  # the same codec library underneath: identical or within rounding


@pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
@pytest.mark.parametrize("fails_at", ["open", "decode"])
def test_decord_falls_back_to_pyav_per_file(indexed_videos, monkeypatch, fails_at):
    """The default decoder (decord) falls back to PyAV for a file it cannot open or decode: the same frames as
    PyAV's own, not an error (README: 'falls back to PyAV per file')."""
    from mvit_video.data import decoding

    real = decoding.DecordReader

    class Failing(real):  # decord failing on this file, as it does on some real ones
        def __init__(self, *args, **kwargs):
            if fails_at == "open":
                raise RuntimeError("decord: cannot open")
            super().__init__(*args, **kwargs)

        def get_frames(self, indices):
            raise RuntimeError("decord: cannot decode")

    monkeypatch.setattr(decoding, "DecordReader", Failing)
    path, source, _ = indexed_videos["a.mp4"]
    idx = [0, len(source) // 2, len(source) - 1]
    got = open_video(path, "decord").get_frames(idx)
    assert torch.equal(got, open_video(path, "pyav").get_frames(idx))
    assert all(_closest(got[k], source, i)[0] == i for k, i in enumerate(idx))


def test_pyav_seeks_into_long_video(indexed_videos):
    # late frames of a 120-frame video, read after a seek, in separate calls on one reader
    path, source, _ = indexed_videos["long.mp4"]
    reader = PyAVReader(str(path))
    for idx in ([100, 101, 119], [45], [0, 119], [60, 3]):
        got = reader.get_frames(idx)
        for k, i in enumerate(idx):
            assert _closest(got[k], source, i)[0] == i


def _truncated(video_dir, tmp_path, name: str) -> str:
    data = (video_dir / name).read_bytes()
    out = tmp_path / f"trunc_{name}"
    out.write_bytes(data[: len(data) // 3])
    return str(out)


@pytest.mark.parametrize("decoder", DECODERS)
def test_bad_files_raise_with_the_path(video_dir, tmp_path, decoder):
    bad = [
        str(video_dir / "missing.mp4"),
        str(video_dir / "empty.mp4"),
        str(video_dir / "garbage.mp4"),
        _truncated(video_dir, tmp_path, "b.mp4"),  # mp4 with its index (moov) at the end: cut off
    ]
    for path in bad:
        with pytest.raises(VideoDecodeError) as info:
            open_video(path, decoder).get_frames([0])
        assert str(info.value).startswith(path)
        assert isinstance(info.value, UserError)


def test_truncated_webm_gives_frames_or_a_clear_error(video_dir, tmp_path):
    path = _truncated(video_dir, tmp_path, "c.webm")
    for decoder in DECODERS:
        try:
            reader = open_video(path, decoder)
            frames = reader.get_frames([0, reader.num_frames - 1])
        except VideoDecodeError as e:
            assert path in str(e)
        else:
            assert frames.shape == (2, 64, 80, 3)


def test_unknown_decoder(video_dir):
    with pytest.raises(UserError, match="data.decoder"):
        open_video(video_dir / "a.mp4", "opencv")
