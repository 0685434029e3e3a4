"""The functions of the top-level API that are not defined elsewhere: a typed config from a command line's
overrides, and a network from a preset name or a config (see mvit_video/__init__.py for the whole API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from mvit_video.models.config import MViTConfig
    from mvit_video.models.mvit import MViT
    from mvit_video.settings import RunConfig


def load_config(*overrides: str) -> RunConfig:
    """The typed, validated settings (RunConfig) of `mvit-train OVERRIDES...`, e.g.
    `load_config("+experiment=k400_s_16x4", "data.num_frames=32")`; a wrong key is a ConfigError naming it."""
    from mvit_video.config import build_config, compose

    return build_config(compose(list(overrides)))


def build_model(config: Union[MViTConfig, RunConfig, str]) -> MViT:
    """A randomly initialised network: from an MViTConfig, a RunConfig (its `.model`) or a preset name
    (`"k400_s_16x4"`, as `+experiment=NAME`; the bare default config for `"tiny"`)."""
    from mvit_video.models.mvit import build_model as build

    if isinstance(config, str):
        config = load_config(*([] if config == "tiny" else [f"+experiment={config}"]))
    model_config = getattr(config, "model", config)  # a RunConfig carries the network's MViTConfig as .model
    return build(model_config)
