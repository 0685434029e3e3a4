"""Per-video embeddings of a list of videos: `python -m mvit_video.extract --checkpoint CKPT --list LIST --out OUT`.

    mvit-extract --checkpoint ckpt.pyth --list videos.txt --prefix /data/videos --out feats
    torchrun --nproc_per_node 8 -m mvit_video.extract --checkpoint ckpt.pyth --list videos.txt --out feats

LIST: one video per line, `path` or `path label` (PySlowFast's list format works as it is); relative paths are
joined to --prefix. Each video's embedding is the head's input (`model.forward_features`) averaged over its K x S
test views, sampled as in `evaluate` and `Predictor.features` (clip settings from the checkpoint unless overridden).
Writes OUT.npy (float32 [N, D], row i = line i of OUT.index.csv: row, video, label) and OUT.failed.txt listing the
videos that could not be decoded (they are skipped, not fatal). Batched through the test loader (each video decoded
once for all its views); under torchrun every process embeds its shard and rank 0 writes each video once.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mvit_video import cli
from mvit_video.utils.errors import UserError, cli_errors
from mvit_video.utils.helptext import from_docstring
from mvit_video.utils.io import atomic_write_text

if TYPE_CHECKING:
    from mvit_video.data.base import VideoDataset
    from mvit_video.eval.multiview import MultiViewResult
    from mvit_video.predict import Predictor

# torch, numpy and the data/model stack are imported in the functions that use them: `--help` answers at once.

logger = logging.getLogger("mvit_video.extract")


def extract(predictor: Predictor, dataset: VideoDataset, *, batch_size: int = 8, num_workers: int = 2,
            progress: bool = True) -> MultiViewResult:
    """Embeddings of every video of `dataset` (a test-split VideoDataset), gathered over ranks: `result.probs`
    holds the [N, D] embeddings (mean over views of forward_features), sorted by dataset index. `progress`: on
    rank 0, as train and evaluate show it: a bar in a terminal, else a log line every 10 batches or 30 s."""
    from mvit_video.data.loader import LoaderWorkers, build_loader
    from mvit_video.utils import distributed
    from mvit_video.eval.multiview import mean_view_features, run_multiview
    from mvit_video.settings import LoaderConfig

    rank, world = distributed.get_rank(), distributed.get_world_size()
    # the test loader of evaluate: ShardSampler (each video on one rank, no padding), test_collate, global batch;
    # seed 0: nothing is random at test time (the loader seeds its worker generator from it)
    settings = LoaderConfig(num_workers=num_workers, pin_memory=True, persistent_workers=False, decoder_threads=1)
    loader = build_loader(dataset, "test", settings, batch_size=batch_size, seed=0, world_size=world, rank=rank)
    with LoaderWorkers():  # every exit path ends the workers
        return run_multiview(predictor.model, loader, device=predictor.device, amp_dtype=predictor.amp_dtype,
                             max_views_per_forward=predictor.max_views_per_forward, per_video=mean_view_features,
                             progress="extract" if progress else None)


def index_csv(result: MultiViewResult) -> str:
    """CSV text: row, video (as in the list), label (empty when the list has none)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", "video", "label"])
    for row, (path, label) in enumerate(zip(result.paths, result.labels.tolist())):
        writer.writerow([row, path, "" if label < 0 else label])
    return out.getvalue()


def write_outputs(result: MultiViewResult, out: Path) -> list[Path]:
    """OUT.npy, OUT.index.csv, and OUT.failed.txt when some videos failed (a stale one is removed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    npy, index, failed = (out.with_name(out.name + suffix) for suffix in (".npy", ".index.csv", ".failed.txt"))
    import numpy as np

    features = result.probs.numpy().astype(np.float32) if len(result) else np.zeros((0, 0), np.float32)
    tmp = npy.with_name(f".{npy.name}.tmp.npy")
    np.save(tmp, features)
    tmp.replace(npy)  # no torn .npy if interrupted
    atomic_write_text(index_csv(result), index)
    written = [npy, index]
    if result.failed:
        atomic_write_text("".join(p + "\n" for p in result.failed), failed)
        written.append(failed)
    elif failed.exists():
        failed.unlink()
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(**from_docstring("extract", __doc__))
    p.add_argument("--checkpoint", required=True, help="an mvit_video checkpoint (ours, or converted)")
    p.add_argument("--list", required=True, dest="list_file", help="videos, one per line: path [label]")
    p.add_argument("--out", required=True, help="output prefix: writes OUT.npy and OUT.index.csv")
    p.add_argument("--prefix", default="", help="directory that relative paths of the list are joined to")
    p.add_argument("--separator", default=" ", help="separator between path and label (default a space)")
    p.add_argument("--views", default=None, help="KxS temporal clips x spatial crops (default: the checkpoint's)")
    p.add_argument("--num-frames", type=int, default=None, help="frames per clip (default: the checkpoint's)")
    p.add_argument("--sampling-rate", type=int, default=None, help="frame stride at 30 fps (default: the checkpoint's)")
    p.add_argument("--crop-size", type=int, default=None, help="test crop (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=8, help="videos per batch over all processes (default 8)")
    p.add_argument("--workers", type=int, default=2, help="data-loader workers per process (default 2)")
    p.add_argument("--max-views-per-forward", type=int, default=16, help="views per forward pass (memory bound)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--decoder", choices=["decord", "pyav"], default="decord")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    args = p.parse_args(argv)
    for key in ("batch_size", "max_views_per_forward"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.workers < 0:
        p.error("--workers must be >= 0")
    return args


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Embed every video of the list; rank 0 writes the files and prints what it wrote and what failed."""
    args = parse_args(argv)
    import torch

    from mvit_video.data.lists import join_prefix, read_list_file
    from mvit_video.utils import distributed
    from mvit_video.predict import Predictor, parse_views

    if args.views is not None:
        parse_views(args.views)  # a bad value fails before anything is loaded
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    rank, _, local_rank = distributed.init_distributed(device)
    cli.setup_logging(None, rank)  # train's format and handler (log lines above a terminal's bar)
    try:
        paths, labels = read_list_file(args.list_file, args.separator, labels_optional=True, missing_hint="")
        predictor = Predictor.from_checkpoint(
            args.checkpoint, device=torch.device("cuda", local_rank) if device == "cuda" else "cpu", use_ema=args.ema,
            views=args.views, num_frames=args.num_frames, sampling_rate=args.sampling_rate, crop_size=args.crop_size,
            decoder=args.decoder, max_views_per_forward=args.max_views_per_forward)
        dataset = predictor.dataset(paths, [join_prefix(args.prefix, p) for p in paths], labels)
        result = extract(predictor, dataset, batch_size=args.batch_size, num_workers=args.workers,
                         progress=not args.no_progress)
        if distributed.is_main():
            out = Path(args.out)
            written = write_outputs(result, out.with_suffix("") if out.suffix == ".npy" else out)
            dim = result.probs.shape[1] if len(result) else 0
            print(f"{len(result)} videos x {dim} features ({predictor.describe()})")
            for path in result.failed:
                print(f"failed: {path}", file=sys.stderr)
            print(f"wrote {', '.join(map(str, written))}")
        distributed.barrier()
        return 0
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    sys.exit(main())
