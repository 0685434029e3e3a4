"""mvit_video: MViTv2 (Li et al., CVPR 2022) for video action recognition."""

__version__ = "0.1.0"
