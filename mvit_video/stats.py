"""`python -m mvit_video.stats [+experiment=NAME] [key=value ...]`: parameters, GFLOPs per view and views.

Prints a table for people and, as the last line, one JSON object for scripts:
`{"params": int, "gflops_per_view": float, "views": [temporal, spatial]}`.
GFLOPs: fvcore, batch 1, one view of data.num_frames x data.test_crop_size^2, one multiply-add = one flop
(PySlowFast's convention; the fused attention is counted as its plain formulation). The network is built on the
meta device and the FLOPs are counted from shapes alone (models.flops.count_gflops_meta, equal to fvcore's trace):
MViTv2-L at 40x312^2 takes seconds; `--fvcore` traces a real forward with fvcore instead (minutes for L on a CPU).
The parameter count is printed on stderr at once, before the FLOPs are counted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import Any, Callable, Sequence

from mvit_video.settings import RunConfig
from mvit_video.utils.errors import UserError, cli_errors

# torch, the model and the Hydra config are imported in the functions that use them: `--help` answers at once.

USAGE = """\
usage: mvit-stats [+experiment=NAME] [key=value ...] [--fvcore]     (or: python -m mvit_video.stats ...)

Parameters, GFLOPs per view and views of the network a training command line would build.

examples:
  mvit-stats +experiment=k400_s_16x4                  # 34.54 M params, 64.5 GFLOPs x 5 x 1 views
  mvit-stats +experiment=ssv2_l_40x3                  # MViTv2-L at 40x312^2, in seconds
  mvit-stats +experiment=k400_b_32x3 data.num_frames=16 test.num_spatial_crops=3"""


def model_stats(run: RunConfig, *, fvcore: bool = False,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Params, GFLOPs per test view and views (K, S) of the model the settings describe. The network is built on
    the meta device and counted from shapes (count_gflops_meta) unless `fvcore` (a real forward, fvcore's trace);
    `progress` is told the parameter count before the FLOPs are counted."""
    import time

    import torch

    from mvit_video.models import MViT
    from mvit_video.models.flops import count_gflops, count_gflops_meta, count_params

    config = dataclasses.replace(run.model, crop_size=run.data.test_crop_size)  # a test view is a test crop
    shape = (1, 3, config.num_frames, config.crop_size, config.crop_size)
    with torch.device("meta"):  # no weights allocated or initialised (L: 213 M parameters)
        model = MViT(config)
    params = count_params(model)
    how = "fvcore trace of a real forward" if fvcore else "from shapes, no compute"
    if progress is not None:
        progress(f"{run.name or 'model'}: {params / 1e6:.2f} M params; counting GFLOPs of one "
                 f"{shape[2]}x{shape[3]}x{shape[4]} view ({how})...")
    start = time.perf_counter()
    if fvcore:
        gflops = count_gflops(MViT(config), shape)
    else:
        gflops = count_gflops_meta(model, shape)
    if progress is not None:
        progress(f"counted in {time.perf_counter() - start:.1f} s")
    return {
        "params": params,
        "gflops_per_view": round(gflops, 3),
        "views": [run.test.num_ensemble_views, run.test.num_spatial_crops],
        "input": list(shape[2:]),
        "num_classes": config.num_classes,
        "depth": config.depth,
        "name": run.name,
    }


def format_table(stats: dict[str, Any]) -> str:
    """Human-readable table, with GFLOPs x views written as the paper does (e.g. 64 x 5 x 1)."""
    k, s = stats["views"]
    g = stats["gflops_per_view"]
    t, h, w = stats["input"]
    rows = [
        ("experiment", stats["name"] or "-"),
        ("input / view", f"{t}x{h}x{w} (T x H x W), {stats['num_classes']} classes, {stats['depth']} blocks"),
        ("params", f"{stats['params'] / 1e6:.2f} M"),
        ("GFLOPs / view", f"{g:.1f}"),
        ("views", f"{k} x {s} (temporal x spatial)"),
        ("GFLOPs x views", f"{g:.3g} x {k} x {s} = {g * k * s:.4g}"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


@cli_errors
def main(argv: Sequence[str] | None = None) -> None:
    """Compose the config from command-line overrides and print the stats."""
    from mvit_video.config import build_config, compose

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    overrides = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(overrides):
        print(USAGE)
        print("\n" + __doc__.strip())
        print("\nOverrides are the training config's keys (conf/config.yaml), e.g. data.num_frames=32.")
        return
    fvcore = "--fvcore" in overrides
    overrides = [o for o in overrides if o != "--fvcore"]
    flags = [o for o in overrides if o.startswith("-")]
    if flags:
        raise UserError(f"unknown option {flags[0]}: stats takes [+experiment=NAME] [key=value ...] [--fvcore] "
                        "(--help)")
    stats = model_stats(build_config(compose(overrides)), fvcore=fvcore,
                        progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_table(stats))
    print(json.dumps({"params": stats["params"], "gflops_per_view": stats["gflops_per_view"], "views": stats["views"]}))


if __name__ == "__main__":
    main()
