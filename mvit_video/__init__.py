"""mvit_video: MViTv2 (Li et al., CVPR 2022) for video action recognition."""

from typing import Any

__version__ = "0.1.0"

__all__ = ["Predictor"]


def __getattr__(name: str) -> Any:
    # Lazy: `import mvit_video` (every entry point does) should not import the data and model stack.
    if name == "Predictor":
        from mvit_video.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'mvit_video' has no attribute {name!r}")
