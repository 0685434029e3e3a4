"""Multi-view test of a checkpoint: `python -m mvit_video.evaluate +experiment=NAME test.checkpoint=PATH`.

Other settings as overrides, e.g. `test.num_ensemble_views=5 test.num_spatial_crops=3 test.split=val`; without
test.checkpoint (or with `latest`) the latest intact checkpoint of `<output_dir>/checkpoints` is tested, with
`test.checkpoint=best` its best-by-validation one. The clip settings (predict.CLIP_KEYS:
frames, sampling rate, fps, crop, short side, mean/std) are the checkpoint's unless set on the command line; the
log says which were taken. `evaluate --config-path RUN --config-name config` re-tests a training run folder with
its saved config.yaml (output_dir = RUN, its latest checkpoint). Under torchrun every rank scores its shard.

Writes only its own records, never a training's files (a run may be training in output_dir: its lock is
respected by reading only): `<output_dir>/eval/<checkpoint name>/` (mvit_video.eval.reports.eval_dir) gets
predictions.jsonl, per_class_accuracy.csv, failed_videos.txt when some videos could not be decoded, and one line
appended to its metrics.jsonl naming the checkpoint and its epoch; the test scalars go to
`<output_dir>/eval/tensorboard` at the checkpoint's epoch. A checkpoint whose classes are not the data's is
refused (eval.testing._check_classes; test.allow_class_subset for a subset). The test itself is
mvit_video.eval.testing.test, which training also calls at the end (writing the run's own metrics.jsonl line).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mvit_video import cli
from mvit_video.utils.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

logger = logging.getLogger("mvit_video.evaluate")

USAGE = """\
usage: mvit-evaluate [+experiment=NAME] test.checkpoint=PATH|latest|best [key=value ...]
       mvit-evaluate --config-path RUN_DIR --config-name config [key=value ...]
       (or: python -m mvit_video.evaluate ...)

Multi-view test of a checkpoint (K temporal clips x S spatial crops per video, each video decoded once). Writes
predictions.jsonl, per_class_accuracy.csv and a metrics.jsonl line under output_dir/eval/<checkpoint>/; prints
top-1/top-5.

examples:
  mvit-evaluate +experiment=k400_b_32x3 data.path_to_data_dir=data/k400 test.checkpoint=ckpt.pyth
  mvit-evaluate +experiment=k400_b_32x3 data.path_to_data_dir=data/k400 test.checkpoint=ckpt.pyth \\
      test.num_ensemble_views=5 test.num_spatial_crops=3
  mvit-evaluate --config-path outputs/tiny_synthetic --config-name config   # re-test a run, its latest checkpoint"""


def run(cfg: DictConfig, explicit: Sequence[str] = ()) -> dict[str, Any]:
    """Test test.checkpoint (else output_dir's latest) and print the report on rank 0. The checkpoint's clip
    settings are written into `cfg`, except keys in `explicit` (set on the command line)."""
    # Imported here: `mvit-evaluate --help`, a wrong key and a wrong value answer without loading torch and the
    # data stack (seconds of imports): the configuration is checked first.
    from omegaconf import open_dict

    from mvit_video.config import build_config
    from mvit_video.utils.ranks import env_ranks

    rank, world, local_rank, _ = env_ranks()
    cli.setup_logging(None, rank)
    settings = build_config(cfg, world_size=world)

    from mvit_video.checkpoint import load_checkpoint_info, load_model, resolve_checkpoint
    from mvit_video.data.loader import LoaderWorkers
    from mvit_video.utils import distributed
    from mvit_video.engine.runlock import describe_holder, live_holder
    from mvit_video.eval.reports import EVAL, eval_dir, summary_text
    from mvit_video.eval.testing import test
    from mvit_video.predict import clip_settings

    device = cli.resolve_device(settings.device, local_rank)
    distributed.init_distributed(device.type)
    try:
        output_dir = Path(settings.output_dir)
        path = resolve_checkpoint(settings.test.checkpoint, output_dir)
        info = load_checkpoint_info(path)
        head = (info.get("model_config") or {}).get("num_classes")
        if "model.num_classes" in explicit and head is not None and settings.model.num_classes != head:
            raise ConfigError(f"config key 'model.num_classes' is {settings.model.num_classes} but the checkpoint "
                              f"{path} has a {head}-class head (the tested network is the checkpoint's)")
        records = eval_dir(output_dir, path)
        holder = live_holder(output_dir) if distributed.is_main() else None
        if holder is not None:
            logger.info("%s is in use by a training run (%s): read only; this evaluation writes only %s", output_dir,
                        describe_holder(holder), records)
        adopted = clip_settings(settings.data, info.get("data_config"), path, explicit)
        if adopted:
            with open_dict(cfg):
                cfg.data.update(adopted)
            settings = build_config(cfg, world_size=world)
        model = load_model(path, use_ema=settings.test.use_ema).to(device)
        with LoaderWorkers():  # every exit path ends the test loader's workers
            report = test(settings, model, info.get("class_names"), epoch=info.get("epoch"),
                          checkpoint=path, records_dir=records, tensorboard_dir=output_dir / EVAL / "tensorboard")
        if distributed.is_main():
            print(summary_text(path, report, records))
        return report
    finally:
        distributed.cleanup()


def _run_dir_args(args: list[str]) -> list[str]:
    """`--config-path RUN --config-name config` re-tests a training run from its saved config.yaml: RUN is made
    absolute (Hydra would read it relative to this file), output_dir defaults to RUN, and Hydra writes no
    outputs/<date>/ folder or log of its own (the saved config has no hydra section)."""
    from mvit_video.config import split_hydra_args  # here: config imports omegaconf, which `--help` never needs

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
