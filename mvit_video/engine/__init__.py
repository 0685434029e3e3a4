"""Training engine: the run (trainer: build_run, fit, checkpoint_state), one epoch (loop), optimizer groups and LR
schedule (optim), resuming (resume), one run per output_dir (runlock), weight averaging
(ema) and throughput/MFU (throughput). Everything here takes the typed settings (mvit_video.settings); process
groups are mvit_video.utils.distributed (used by eval/ too)."""
