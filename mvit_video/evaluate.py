"""Multi-view test of a checkpoint: `python -m mvit_video.evaluate +experiment=NAME test.checkpoint=PATH`.

Other settings as overrides, e.g. `test.num_ensemble_views=5 test.num_spatial_crops=3 test.split=val`; without
test.checkpoint the latest intact checkpoint of `<output_dir>/checkpoints` is tested. The clip settings (CLIP_KEYS:
frames, sampling rate, fps, crop, short side, mean/std) are the checkpoint's unless set on the command line; the
log says which were taken. `evaluate --config-path RUN --config-name config` re-tests a training run folder with
its saved config.yaml (output_dir = RUN, its latest checkpoint). Under torchrun every rank scores its shard.

Writes to output_dir (mvit_video.eval.reports): predictions.jsonl, one line appended to metrics.jsonl,
per_class_accuracy.csv, failed_videos.txt when some videos could not be decoded, and tensorboard/. The test itself
is mvit_video.eval.testing.test, which training also calls at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mvit_video import cli

if TYPE_CHECKING:
    from omegaconf import DictConfig

USAGE = """\
usage: mvit-evaluate [+experiment=NAME] test.checkpoint=PATH [key=value ...]   (or: python -m mvit_video.evaluate)
       mvit-evaluate --config-path RUN_DIR --config-name config [key=value ...]

Multi-view test of a checkpoint (K temporal clips x S spatial crops per video, each video decoded once). Writes
predictions.jsonl, per_class_accuracy.csv and a metrics.jsonl line to output_dir; prints top-1/top-5.

examples:
  mvit-evaluate +experiment=k400_b_32x3 data.path_to_data_dir=data/k400 test.checkpoint=ckpt.pyth
  mvit-evaluate +experiment=k400_b_32x3 data.path_to_data_dir=data/k400 test.checkpoint=ckpt.pyth \\
      test.num_ensemble_views=5 test.num_spatial_crops=3
  mvit-evaluate --config-path outputs/tiny_synthetic --config-name config   # re-test a run, its latest checkpoint"""


def run(cfg: DictConfig, explicit: Sequence[str] = ()) -> dict[str, Any]:
    """Test test.checkpoint (else output_dir's latest) and print the report on rank 0. The checkpoint's clip
    settings are written into `cfg`, except keys in `explicit` (set on the command line)."""
    # Imported here: `mvit-evaluate --help` and a wrong key answer without loading torch and the data stack.
    from omegaconf import open_dict

    from mvit_video.checkpoint import clip_settings, latest_checkpoint, load_checkpoint_info, load_model
    from mvit_video.config import build_config
    from mvit_video.data.loader import stop_workers
    from mvit_video.engine import distributed
    from mvit_video.eval.reports import summary_text
    from mvit_video.eval.testing import test

    rank, world, local_rank, _ = distributed.env_ranks()
    cli.setup_logging(None, rank)
    settings = build_config(cfg, world_size=world)
    device = cli.resolve_device(settings.device, local_rank)
    distributed.init_distributed(device.type)
    try:
        path = Path(settings.test.checkpoint or latest_checkpoint(settings.output_dir))
        info = load_checkpoint_info(path)
        adopted = clip_settings(settings.data, info.get("data_config"), path, explicit)
        if adopted:
            with open_dict(cfg):
                cfg.data.update(adopted)
            settings = build_config(cfg, world_size=world)
        model = load_model(path, use_ema=settings.test.use_ema).to(device)
        report = test(settings, model, info.get("class_names"), epoch=info.get("epoch"))
        if distributed.is_main():
            print(summary_text(path, report, Path(settings.output_dir)))
        return report
    finally:
        stop_workers()  # every exit path ends the data-loader workers
        distributed.cleanup()


def _run_dir_args(args: list[str]) -> list[str]:
    """`--config-path RUN --config-name config` re-tests a training run from its saved config.yaml: RUN is made
    absolute (Hydra would read it relative to this file), output_dir defaults to RUN, and Hydra writes no
    outputs/<date>/ folder or log of its own (the saved config has no hydra section)."""
    from mvit_video.config import split_hydra_args

    overrides, flags = split_hydra_args(args)
    run_dir = flags.get("--config-path", flags.get("-cp"))
    if run_dir is None:
        return args
    absolute = str(Path(run_dir).expanduser().resolve())
    path_flags, out = ("--config-path", "-cp"), []
    for i, a in enumerate(args):
        name, eq, _ = a.partition("=")
        if eq and name in path_flags:
            a = f"{name}={absolute}"
        elif a == run_dir and i > 0 and args[i - 1] in path_flags:
            a = absolute
        out.append(a)
    keys = set(cli.explicit_keys(overrides))
    return out + [f"{k}={v}" for k, v in (("output_dir", absolute), ("hydra.run.dir", absolute),
                                          ("hydra.output_subdir", "null"), ("hydra/job_logging", "none"),
                                          ("hydra/hydra_logging", "none")) if k not in keys]


def main() -> None:
    """CLI (cli.main): `key=value` runs compose here, a bad key is one error line; Hydra flags go to Hydra."""
    cli.main(sys.argv[1:], run, hydra_args=_run_dir_args, usage=USAGE)


if __name__ == "__main__":
    main()
