"""Train MViTv2: `python -m mvit_video.train [+experiment=NAME] [key=value ...]`.

Everything a run writes goes to `output_dir` (default `outputs/<name>`): train.log, metrics.jsonl,
tensorboard/, checkpoints/, bad_videos.txt, config.yaml. Re-running the same command resumes from the latest
checkpoint. SIGTERM/SIGUSR1/SIGUSR2 (SLURM, submitit preemption) save `checkpoints/checkpoint_preempt.pyth` after the
current step and exit: status 0 after `scontrol requeue` succeeded (under SLURM), else 128 + signal (143 SIGTERM,
138 SIGUSR1, 140 SIGUSR2); under the submitit launcher the signal is handed to submitit, which requeues the job.
SIGINT (Ctrl-C) saves the same way and exits 130. Within train.stop_grace_s of the signal the run ends in any case
(a step that runs for minutes), and a second signal ends it at once (engine/preempt.py). A configuration whose step
cannot fit in memory is refused before it starts (engine/memory.py). A run holds `<output_dir>/.run.lock`: a second
run there refuses. The run itself is mvit_video.engine.trainer (build_run, fit).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mvit_video import cli

if TYPE_CHECKING:
    from omegaconf import DictConfig

USAGE = """\
usage: mvit-train [+experiment=NAME] [key=value ...]     (or: python -m mvit_video.train ...)

Train MViTv2, then test the last epoch (test.enable). Everything goes to output_dir (default outputs/<name>):
train.log, metrics.jsonl, tensorboard/, checkpoints/, config.yaml. Re-running the same command resumes.

examples:
  mvit-train                                    # the embedded first run: a tiny MViTv2 on a synthetic set, CPU
  mvit-train +experiment=k400_s_16x4 data.path_to_data_dir=data/k400
  mvit-train +experiment=ssv2_s_16x4 data.path_to_data_dir=data/ssv2 train.checkpoint_file_path=k400_s.pyth
  torchrun --nproc_per_node 8 -m mvit_video.train +experiment=k400_b_32x3 data.path_to_data_dir=data/k400
  mvit-train -m solver.base_lr=1e-4,3e-4 solver.max_epoch=2     # a sweep: one output folder per job
  mvit-train --cfg job +experiment=k400_b_32x3                  # print the composed config, train nothing"""


def train(cfg: DictConfig, *, on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run training (and the final test when test.enable); returns the last train/val/test records."""
    # Imported here: `mvit-train --help`, a wrong key and a wrong value answer without loading torch and the data
    # stack (seconds of imports): the whole configuration is checked first.
    from mvit_video.config import build_config_and_notes
    from mvit_video.utils.ranks import env_ranks

    rank, world, local_rank, nodes = env_ranks()
    # Before anything is written or started. Launched on several processes, num_shards is the launcher's number of
    # nodes (PySlowFast NUM_SHARDS: the LR is scaled by it). The notes are logged once the log file is set up.
    run, notes = build_config_and_notes(cfg, world_size=world, check_paths=True,
                                        num_shards=nodes if world > 1 else None)

    import torch

    from mvit_video.data.loader import LoaderWorkers, available_cores
    from mvit_video.utils import distributed as du
    from mvit_video.engine.memory import out_of_memory_as_error
    from mvit_video.engine.preempt import PreemptionHandler
    from mvit_video.engine.resume import fresh_start, set_aside_for_resume_from
    from mvit_video.engine.runlock import lock_output_dir
    from mvit_video.engine.trainer import build_run, fit
    device, amp_dtype = cli.resolve_runtime(run, local_rank)
    if device.type == "cpu":
        # Leave a core per data-loader worker: oversubscribed OpenMP threads spin and run several times slower.
        torch.set_num_threads(max(1, available_cores() // world - run.data_loader.num_workers))
    du.init_distributed(device.type)
    lock = None
    # Stop signals are caught from here on: before the training loop they end the run at once (nothing to save),
    # inside it after the step and its checkpoint, within train.stop_grace_s in any case (engine/preempt.py).
    preempt = PreemptionHandler(run.train.stop_grace_s)
    preempt.checkpointable = False
    preempt.install()
    try:
        cli.setup_logging(None, rank)
        lock = lock_output_dir(Path(run.output_dir))  # before anything is written there
        if lock is not None:
            preempt.at_hard_exit(lock.release)
        # auto_resume=false, or train.resume_from starting another history: the old run's files move aside
        fresh_notes = (fresh_start(run, Path(run.output_dir)), set_aside_for_resume_from(run, Path(run.output_dir)))
        cli.setup_logging(Path(run.output_dir), rank)
        for note in (*fresh_notes, *notes):
            if note:
                logging.getLogger("mvit_video.train").info(note)
        # Leaving by any path (error, signal, full disk) ends the data-loader workers started inside.
        with LoaderWorkers(), out_of_memory_as_error(run, world):
            return fit(build_run(run, device, amp_dtype), on_step, preempt=preempt)
    finally:
        if lock is not None:
            lock.release()
        du.cleanup()
        preempt.restore()


def _task(cfg: DictConfig, explicit: Sequence[str]) -> None:
    cli.multirun_output_dir(cfg)  # under --multirun: each job in its own folder
    try:
        train(cfg)
    finally:
        cli.remove_hydra_job_dir()


def main() -> None:
    """CLI: `key=value` overrides (one-line errors); Hydra flags (--multirun with a launcher, --cfg) go to Hydra."""
    cli.main(sys.argv[1:], _task, around_hydra=cli.check_sweep, usage=USAGE)


if __name__ == "__main__":
    main()
