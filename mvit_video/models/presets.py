"""The MViTv2 video presets as data: what conf/model/mvit_{t,s,b,l,h}.yaml and the experiment files encode.

Values from PySlowFast configs/Kinetics/MVITv2_{S_16x4,B_32x3,L_40x3_test}.yaml and configs/SSv2/MVITv2_*.yaml;
T and H follow the paper's stage depths (T [1,2,5,2], H [4,8,60,8]) with the same rules (PySlowFast ships no
video config for them). `reference_*` are REFERENCE.md §1 (PySlowFast's own fvcore figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mvit_video.models.config import MViTConfig


@dataclass(frozen=True)
class Preset:
    """One row of the paper's video table (architecture + the data/test settings it was trained/tested with)."""

    name: str
    depth: int
    embed_dim: int
    num_heads: int
    stage_starts: tuple[int, int, int]  # blocks where width and heads double and q is strided (1, 2, 2)
    droppath_rate: float
    num_frames: int
    sampling_rate: int
    crop_size: int
    num_classes: int = 400
    dropout_rate: float = 0.5
    act_checkpoint: bool = False
    views: tuple[int, int] = (5, 1)  # test.num_ensemble_views x test.num_spatial_crops
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    reference_params: float | None = None  # parameters as PySlowFast counts them
    reference_gflops: float | None = None  # GFLOPs per view (fvcore, 1 multiply-add = 1 flop)

    def mvit_section(self) -> dict[str, Any]:
        """The `mvit:` section of the Hydra config (PySlowFast MVIT.* keys in lower case)."""
        muls = [[b, 2.0] for b in self.stage_starts]
        return {
            "depth": self.depth,
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "mlp_ratio": 4.0,
            "qkv_bias": True,
            "droppath_rate": self.droppath_rate,
            "patch_kernel": [3, 7, 7],
            "patch_stride": [2, 4, 4],
            "patch_padding": [1, 3, 3],
            "cls_embed_on": True,
            "use_abs_pos": False,
            "use_mean_pooling": False,
            "pool_kvq_kernel": [3, 3, 3],
            "pool_q_stride": [[i, 1, 2, 2] if i in self.stage_starts else [i, 1, 1, 1] for i in range(self.depth)],
            "pool_kv_stride_adaptive": [1, 8, 8],
            "dim_mul": muls,
            "head_mul": [list(m) for m in muls],
            "mode": "conv",
            "rel_pos_spatial": True,
            "rel_pos_temporal": True,
            "rel_pos_zero_init": False,
            "residual_pooling": True,
            "dim_mul_in_att": True,
            "separate_qkv": False,
        }

    def model_config(self, **overrides: Any) -> MViTConfig:
        """The MViTConfig of this preset (overrides e.g. num_classes=174, num_frames=8)."""
        values: dict[str, Any] = dict(
            self.mvit_section(),
            num_classes=self.num_classes,
            dropout_rate=self.dropout_rate,
            act_checkpoint=self.act_checkpoint,
            num_frames=self.num_frames,
            crop_size=self.crop_size,
        )
        values.update(overrides)
        return MViTConfig(**values)


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

PRESETS: dict[str, Preset] = {
    # Architecture presets (K400 values), one per conf/model/mvit_*.yaml.
    "mvit_t": Preset("mvit_t", 10, 96, 1, (1, 3, 8), 0.1, 16, 4, 224),
    "mvit_s": Preset("mvit_s", 16, 96, 1, (1, 3, 14), 0.2, 16, 4, 224, reference_params=34.54e6, reference_gflops=64.5),
    "mvit_b": Preset("mvit_b", 24, 96, 1, (2, 5, 21), 0.3, 32, 3, 224, reference_params=51.23e6, reference_gflops=225.2),
    "mvit_l": Preset(
        "mvit_l", 48, 144, 2, (2, 8, 44), 0.75, 40, 3, 312, act_checkpoint=True, views=(5, 3),
        mean=_IMAGENET_MEAN, std=_IMAGENET_STD, reference_params=213.39e6, reference_gflops=2828.0,
    ),
    "mvit_h": Preset(
        "mvit_h", 80, 192, 3, (4, 12, 72), 0.8, 40, 3, 312, act_checkpoint=True, views=(5, 3),
        mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    ),
    # Paper video rows (dataset-specific values the experiment files set on top of the model preset).
    "k400_s": Preset("k400_s", 16, 96, 1, (1, 3, 14), 0.2, 16, 4, 224, reference_params=34.54e6, reference_gflops=64.5),
    "k400_b": Preset("k400_b", 24, 96, 1, (2, 5, 21), 0.3, 32, 3, 224, reference_params=51.23e6, reference_gflops=225.2),
    "k400_l": Preset(
        "k400_l", 48, 144, 2, (2, 8, 44), 0.75, 40, 3, 312, act_checkpoint=True, views=(5, 3),
        mean=_IMAGENET_MEAN, std=_IMAGENET_STD, reference_params=213.39e6, reference_gflops=2828.0,
    ),
    "k600_b": Preset("k600_b", 24, 96, 1, (2, 5, 21), 0.3, 32, 3, 224, num_classes=600),
    "k600_l": Preset(
        "k600_l", 48, 144, 2, (2, 8, 44), 0.75, 40, 3, 312, num_classes=600, act_checkpoint=True, views=(5, 3),
        mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    ),
    "k700_b": Preset("k700_b", 24, 96, 1, (2, 5, 21), 0.3, 32, 3, 224, num_classes=700),
    "k700_l": Preset(
        "k700_l", 48, 144, 2, (2, 8, 44), 0.75, 40, 3, 312, num_classes=700, act_checkpoint=True, views=(5, 3),
        mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    ),
    "ssv2_s": Preset(
        "ssv2_s", 16, 96, 1, (1, 3, 14), 0.4, 16, 4, 224, num_classes=174, views=(1, 3),
        reference_params=34.36e6, reference_gflops=64.5,
    ),
    "ssv2_b": Preset(
        "ssv2_b", 24, 96, 1, (2, 5, 21), 0.4, 32, 3, 224, num_classes=174, views=(1, 3),
        reference_params=51.06e6, reference_gflops=225.2,
    ),
    "ssv2_l": Preset(
        "ssv2_l", 48, 144, 2, (2, 8, 44), 0.75, 40, 3, 312, num_classes=174, act_checkpoint=True, views=(1, 3),
        mean=_IMAGENET_MEAN, std=_IMAGENET_STD, reference_params=213.13e6,
    ),
}
