"""`python -m mvit_video.stats [+experiment=NAME] [key=value ...]`: parameters, GFLOPs per view and views.

Prints a table for people and, as the last line, one JSON object for scripts:
`{"params": int, "gflops_per_view": float, "views": [temporal, spatial]}`.
GFLOPs: fvcore, batch 1, one view of data.num_frames x data.test_crop_size^2, one multiply-add = one flop
(PySlowFast's convention; the fused attention is counted as its plain formulation).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import Any, Sequence

from mvit_video.settings import RunConfig
from mvit_video.utils.errors import UserError, cli_errors


def model_stats(run: RunConfig) -> dict[str, Any]:
    """Params, GFLOPs per test view and views (K, S) of the model the settings describe."""
    from mvit_video.models import MViT
    from mvit_video.models.flops import count_gflops, count_params

    config = dataclasses.replace(run.model, crop_size=run.data.test_crop_size)  # a test view is a test crop
    model = MViT(config)
    shape = (1, 3, config.num_frames, config.crop_size, config.crop_size)
    return {
        "params": count_params(model),
        "gflops_per_view": round(count_gflops(model, shape), 3),
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
        print(__doc__.strip())
        print("\nOverrides are the training config's keys (conf/config.yaml), e.g. data.num_frames=32.")
        return
    flags = [o for o in overrides if o.startswith("-")]
    if flags:
        raise UserError(f"unknown option {flags[0]}: stats takes only [+experiment=NAME] [key=value ...] (--help)")
    stats = model_stats(build_config(compose(overrides)))
    print(format_table(stats))
    print(json.dumps({"params": stats["params"], "gflops_per_view": stats["gflops_per_view"], "views": stats["views"]}))


if __name__ == "__main__":
    main()
