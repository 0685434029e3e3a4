"""Training engine: optimizer groups and LR schedule (optim), checkpoints (checkpoint), process groups
(distributed), the train/val epoch (loop) and weight averaging (ema). `mvit_video.train` wires them together."""
