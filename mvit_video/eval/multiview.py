"""Multi-view testing: the K x S views of each video -> one averaged class distribution per video.

The per-video score is the mean over views of the softmax probabilities (PySlowFast sums them; the argmax and the
ranking are the same). Under torch.distributed every rank evaluates its own shard (no padding duplicates) and the
results are gathered so that each video appears once, sorted by dataset index.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mvit_video.settings import AMP_DTYPES
from mvit_video.utils import distributed
from mvit_video.utils.progress import Progress

logger = logging.getLogger(__name__)


@dataclass
class MultiViewResult:
    """Per-video results of a multi-view run, sorted by dataset index; failed videos are only listed."""

    indices: torch.Tensor  # LongTensor [N], dataset index of each scored video
    paths: list[str]  # [N], path as in the list file
    labels: torch.Tensor  # LongTensor [N]
    probs: torch.Tensor  # FloatTensor [N, C], mean over views of softmax(logits)
    failed: list[str] = field(default_factory=list)  # paths of the videos that could not be decoded
    failed_indices: list[int] = field(default_factory=list)
    stopped: bool = False  # some rank stopped early (`stop`): the results are incomplete

    def __len__(self) -> int:
        return len(self.paths)


def resolve_amp_dtype(amp_dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch dtype or None (full precision) as given; a name for `Predictor(amp_dtype=...)` users: the config
    spellings of settings.AMP_DTYPES ("bf16", "fp16") or the dtypes' own ("bfloat16", "float16")."""
    if amp_dtype is None or isinstance(amp_dtype, torch.dtype):
        return amp_dtype
    names = {**AMP_DTYPES, **{str(d).removeprefix("torch."): d for d in AMP_DTYPES.values()}}
    try:
        return names[str(amp_dtype).lower()]
    except KeyError:
        raise ValueError(f"amp_dtype must be one of {sorted(names)} or a torch dtype, got {amp_dtype!r}") from None


def _as_list(value: Any, n: int) -> list:
    """A collated batch field (tensor, list, or a single item's scalar) as a python list of length n."""
    if isinstance(value, torch.Tensor):
        value = value.reshape(-1).tolist()
    elif not isinstance(value, (list, tuple)):
        value = [value]
    if len(value) != n:
        raise ValueError(f"batch field has {len(value)} entries for {n} videos")
    return list(value)


def _split_batch(batch: dict[str, Any]) -> list[tuple[int, str, int, bool, torch.Tensor]]:
    """A test batch -> [(index, path, label, ok, views [V,3,T,H,W])]; accepts stacked or listed views."""
    views = batch["views"]
    if isinstance(views, torch.Tensor):
        # A single uncollated item is [V,3,T,H,W]; a stacked batch is [B,V,3,T,H,W].
        views = [views] if views.ndim == 5 else list(views.unbind(0))
    n = len(views)
    ok = _as_list(batch.get("ok", [True] * n), n)
    return list(
        zip(
            (int(i) for i in _as_list(batch["index"], n)),
            (str(p) for p in _as_list(batch["path"], n)),
            (int(label) for label in _as_list(batch["label"], n)),
            (bool(o) for o in ok),
            views,
        )
    )


@torch.no_grad()
def mean_view_outputs(
    forward: Callable[[torch.Tensor], torch.Tensor],
    views: Sequence[torch.Tensor],
    device: torch.device | str,
    amp_dtype: torch.dtype | str | None = None,
    max_views_per_forward: int = 16,
    softmax: bool = False,
) -> list[torch.Tensor]:
    """Mean over views of `forward(views)` (softmax first when `softmax`) for each video in `views` (list of
    [V_i,3,T,H,W]) -> list of [D], float32 on the CPU.

    The views of all videos are forwarded together in chunks of at most `max_views_per_forward`; the module behind
    `forward` must already be in eval mode. A torch.compile'd `forward` gets every chunk padded to
    `max_views_per_forward` views (outputs of the padding dropped): one input shape, so the last chunk does not
    trigger a recompilation.
    """
    device, amp_dtype = torch.device(device), resolve_amp_dtype(amp_dtype)
    fixed_shape = is_compiled(forward)
    counts = [v.shape[0] for v in views]
    outputs = []
    autocast = (
        torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )
    for pieces in _chunks(views, max_views_per_forward):
        # slices of the (pinned) loader tensors go to the device one by one: no host-side copy of the whole batch
        moved = [p.to(device, non_blocking=True) for p in pieces]
        chunk = torch.cat(moved) if len(moved) > 1 else moved[0]
        n = chunk.shape[0]
        if fixed_shape and n < max_views_per_forward:
            chunk = torch.cat([chunk, chunk.new_zeros((max_views_per_forward - n, *chunk.shape[1:]))])
        with autocast:
            out = forward(chunk)[:n]
        out = out.float()  # softmax and means in fp32: bf16 logits lose the small probs
        outputs.append((out.softmax(dim=-1) if softmax else out).cpu())
    per_view = torch.cat(outputs, dim=0)
    return [p.mean(dim=0) for p in per_view.split(counts, dim=0)]


def mean_view_probs(
    model: nn.Module,
    views: Sequence[torch.Tensor],
    device: torch.device | str,
    amp_dtype: torch.dtype | str | None = None,
    max_views_per_forward: int = 16,
) -> list[torch.Tensor]:
    """Mean softmax over views for each video in `views` (list of [V_i,3,T,H,W]) -> list of [C]."""
    return mean_view_outputs(model, views, device, amp_dtype, max_views_per_forward, softmax=True)


def mean_view_features(
    model: nn.Module,
    views: Sequence[torch.Tensor],
    device: torch.device | str,
    amp_dtype: torch.dtype | str | None = None,
    max_views_per_forward: int = 16,
) -> list[torch.Tensor]:
    """Mean over views of the pooled embedding (the head's input, `model.forward_features`) -> list of [D]."""
    return mean_view_outputs(model.forward_features, views, device, amp_dtype, max_views_per_forward)


def is_compiled(module: Any) -> bool:
    """True for a torch.compile'd module (an OptimizedModule wraps the original as `_orig_mod`)."""
    return hasattr(module, "_orig_mod")


def _chunks(views: Sequence[torch.Tensor], size: int) -> Iterator[list[torch.Tensor]]:
    """Consecutive slices of the videos' view tensors, `size` views per group (the last may be smaller)."""
    group: list[torch.Tensor] = []
    filled = 0
    for v in views:
        start = 0
        while start < v.shape[0]:
            take = min(size - filled, v.shape[0] - start)
            group.append(v[start : start + take])
            filled, start = filled + take, start + take
            if filled == size:
                yield group
                group, filled = [], 0
    if group:
        yield group


def run_multiview(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    device: torch.device | str,
    amp_dtype: torch.dtype | str | None = None,
    max_views_per_forward: int = 16,
    per_video: Callable[..., list[torch.Tensor]] = mean_view_probs,
    progress: str | None = None,
    log_every: int = 10,
    stop: Callable[[], bool] | None = None,
) -> MultiViewResult:
    """Score every video of `loader` (multi-view test batches) with `model`; gather across ranks if distributed.

    `per_video(model, views, device, amp_dtype, max_views_per_forward)` reduces each video's views to one vector:
    the mean softmax by default; `mean_view_features` gives embeddings (then `result.probs` holds them).
    `progress`: a name ("test", "val") to show progress under on rank 0 (a tqdm bar in a terminal, else a line
    with videos/s and ETA every `log_every` batches); None shows nothing. `stop` (e.g. "a stop signal came") is
    asked before each batch: when true this rank scores no more, and the gathered result is `stopped` on every rank
    (the flag travels with the results: no extra collective, so ranks may stop at different batches).
    """
    device = torch.device(device)
    amp_dtype = resolve_amp_dtype(amp_dtype)
    if max_views_per_forward < 1:
        raise ValueError(f"max_views_per_forward must be >= 1, got {max_views_per_forward}")
    # DDP's forward may broadcast buffers (a collective); ranks hold different numbers of videos, so call the module.
    net = distributed.unwrap(model, keep_compiled=True)
    was_training = net.training
    net.eval()

    records: list[tuple[int, str, int, torch.Tensor]] = []
    failed: list[tuple[int, str]] = []
    stopped = False
    sampler = getattr(loader, "sampler", None)
    total = len(sampler) if sampler is not None and hasattr(sampler, "__len__") else None
    shown = Progress(total, progress or "", logger, log_every=log_every,
                     enabled=progress is not None and distributed.is_main())
    try:
        for batch in loader:
            if stop is not None and stop():
                stopped = True
                break
            good = []
            for index, path, label, ok, views in _split_batch(batch):
                if ok and views.shape[0] > 0:
                    good.append((index, path, label, views))
                else:
                    failed.append((index, path))
            if good:
                video_probs = per_video(net, [g[3] for g in good], device, amp_dtype, max_views_per_forward)
                records.extend((i, p, y, pr) for (i, p, y, _), pr in zip(good, video_probs))
            shown.update(len(batch["views"]))
    finally:
        shown.close()
        net.train(was_training)

    local = {"records": [(i, p, y, pr.numpy()) for i, p, y, pr in records], "failed": failed, "stopped": stopped}
    return _merge(distributed.all_gather_object(local))


def _merge(parts: list[dict[str, Any]]) -> MultiViewResult:
    """Join the ranks' results: each dataset index once, sorted by index."""
    by_index: dict[int, tuple[str, int, Any]] = {}
    failed: dict[int, str] = {}
    for part in parts:
        for index, path, label, probs in part["records"]:
            by_index.setdefault(index, (path, label, probs))
        for index, path in part["failed"]:
            failed.setdefault(index, path)
    duplicates = sum(len(p["records"]) for p in parts) - len(by_index)
    if duplicates:
        logger.warning("%d videos were scored on more than one rank; each is counted once", duplicates)
    order = sorted(by_index)
    if order:
        probs = torch.stack([torch.as_tensor(by_index[i][2]) for i in order])
    else:
        probs = torch.zeros(0, 0)
    failed_order = sorted(i for i in failed if i not in by_index)
    return MultiViewResult(
        indices=torch.tensor(order, dtype=torch.long),
        paths=[by_index[i][0] for i in order],
        labels=torch.tensor([by_index[i][1] for i in order], dtype=torch.long),
        probs=probs,
        failed=[failed[i] for i in failed_order],
        failed_indices=failed_order,
        stopped=any(part.get("stopped", False) for part in parts),
    )
