"""Multi-view aggregation on hand-made logits; failed videos; chunking; gathering over 2 gloo processes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mvit_video.eval import run_multiview, summarize


class LogitsInPixel(nn.Module):
    """Returns the first voxel of each view as its logits: views [B,C,T,H,W] -> [B,C]; records batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        self.modes.append(self.training)
        return x[:, :, 0, 0, 0]


def views_from_logits(logits: list[list[float]]) -> torch.Tensor:
    """[V, C] logits -> views [V, C, 2, 2, 2] whose first voxel holds them."""
    v = torch.zeros(len(logits), len(logits[0]), 2, 2, 2)
    v[:, :, 0, 0, 0] = torch.tensor(logits)
    return v


def batch(items: list[tuple[int, str, int, bool, list[list[float]] | None]], num_classes: int = 3) -> dict:
    """A collated test batch as the data loader gives it (views listed per video)."""
    return {
        "views": [views_from_logits(lg) if lg else torch.zeros(0, num_classes, 2, 2, 2) for *_, lg in items],
        "index": torch.tensor([i for i, *_ in items]),
        "path": [p for _, p, *_ in items],
        "label": torch.tensor([y for _, _, y, *_ in items]),
        "ok": [ok for _, _, _, ok, _ in items],
    }


def test_mean_of_softmax_hand_computed():
    e2 = math.exp(2.0)
    loader = [
        batch([(1, "b.mp4", 2, True, [[2, 0, 0], [0, 0, 2]]), (0, "a.mp4", 0, True, [[0, 0, 0]])]),
    ]
    model = LogitsInPixel()
    result = run_multiview(model, loader, device="cpu")
    assert result.indices.tolist() == [0, 1]  # sorted by dataset index
    assert result.paths == ["a.mp4", "b.mp4"]
    assert result.labels.tolist() == [0, 2]
    # mean of the two view softmaxes -- not the softmax of the mean logits ([1, 0, 1] would give 1/(2e+1) in the middle)
    expected_b = [(e2 + 1) / (2 * (e2 + 2)), 1 / (e2 + 2), (e2 + 1) / (2 * (e2 + 2))]
    assert result.probs[1].tolist() == pytest.approx(expected_b, abs=1e-6)
    assert result.probs[0].tolist() == pytest.approx([1 / 3] * 3, abs=1e-6)
    assert result.failed == []


def test_train_mode_restored_and_chunking_bounds_batch():
    model = LogitsInPixel().train()
    items = [(i, f"v{i}.mp4", i % 3, True, [[float(i), 0, 1], [0, float(i), 0], [1, 1, 1]]) for i in range(5)]
    loader = [batch(items[:3]), batch(items[3:])]
    full = run_multiview(model, loader, device="cpu", max_views_per_forward=16)
    assert model.training and not any(model.modes)  # eval mode inside, the caller's mode restored after
    assert max(model.batch_sizes) == 9  # 3 videos x 3 views in one forward
    model.batch_sizes.clear()
    chunked = run_multiview(model, loader, device="cpu", max_views_per_forward=2)
    assert max(model.batch_sizes) == 2
    torch.testing.assert_close(full.probs, chunked.probs)


def test_failed_videos_excluded_and_listed():
    loader = [
        batch([(0, "good.mp4", 1, True, [[0, 3, 0]]), (1, "bad.mp4", 0, False, None)]),
        batch([(2, "bad2.mp4", 2, False, None)]),  # a batch with no decodable video at all
        batch([(3, "good2.mp4", 2, True, [[0, 0, 5], [0, 0, 4]])]),
    ]
    result = run_multiview(LogitsInPixel(), loader, device="cpu")
    assert result.paths == ["good.mp4", "good2.mp4"]
    assert result.failed == ["bad.mp4", "bad2.mp4"]
    m = summarize(result.labels, result.probs)
    assert m["top1"] == 100.0  # the failed videos count neither as right nor as wrong


def test_amp_dtype_strings():
    loader = [batch([(0, "a.mp4", 0, True, [[4, 0, 0]])])]
    result = run_multiview(LogitsInPixel(), loader, device="cpu", amp_dtype="bf16")
    assert result.probs.dtype == torch.float32
    assert result.probs[0].argmax().item() == 0
    with pytest.raises(ValueError, match="amp_dtype"):
        run_multiview(LogitsInPixel(), loader, device="cpu", amp_dtype="int8")


# ---- merging the ranks' results (the real 2-process gloo run is in test_eval_evaluate.py) ----


def test_merge_of_rank_results_sorted_each_video_once():
    from mvit_video.eval.multiview import _merge

    p = [0.5, 0.25, 0.25]
    rank0 = {"records": [(4, "v4.mp4", 1, p), (0, "v0.mp4", 0, p), (2, "v2.mp4", 2, p)], "failed": [(6, "bad.mp4")]}
    # rank 1 also scored video 0 again (as a padding sampler would): it must be counted once
    rank1 = {"records": [(1, "v1.mp4", 1, p), (3, "v3.mp4", 0, p), (0, "v0.mp4", 0, p)], "failed": [(5, "gone.mp4")]}
    result = _merge([rank0, rank1])
    assert result.indices.tolist() == [0, 1, 2, 3, 4]
    assert result.paths == [f"v{i}.mp4" for i in range(5)]
    assert result.labels.tolist() == [0, 1, 2, 0, 1]
    assert result.probs.shape == (5, 3)
    assert result.failed == ["gone.mp4", "bad.mp4"] and result.failed_indices == [5, 6]


@pytest.mark.slow
def test_unwrap_finds_the_network_inside_ddp_and_compile(tmp_path):
    """utils.distributed.unwrap: the network for reports (FLOPs, config); with keep_compiled, what scoring calls
    (run_multiview: compiled code, without DDP's collectives)."""
    import torch.distributed as dist

    from mvit_video.utils.distributed import unwrap

    net = nn.Linear(2, 2)
    compiled = torch.compile(net)  # nothing compiles before the first call
    assert unwrap(net) is net and unwrap(compiled) is net and unwrap(compiled, keep_compiled=True) is compiled
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        wrapped = nn.parallel.DistributedDataParallel(compiled)
        assert unwrap(wrapped) is net and unwrap(wrapped, keep_compiled=True) is compiled
    finally:
        dist.destroy_process_group()
