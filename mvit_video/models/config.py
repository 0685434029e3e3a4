"""MViTv2 configuration: the network's settings (PySlowFast MVIT.* keys in lower case) and the per-block plan.

`MViTConfig` holds what a user writes in `conf/model/*.yaml`: the stages (`depths`, as timm), or PySlowFast's
explicit per-block lists. `block_configs(config)` resolves them and PySlowFast's stride/width rules once into one
`BlockConfig` per block, which is all the network reads.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mvit_video.utils.errors import ConfigError

Triple = tuple[int, int, int]


@dataclass
class MViTConfig:
    """Settings of one MViT network. Field names are PySlowFast's MVIT.* keys in lower case, plus the
    MODEL.* keys the network needs (num_classes, dropout_rate, act_checkpoint) and the input size it is
    built for (num_frames = DATA.NUM_FRAMES, crop_size = DATA.TRAIN_CROP_SIZE).

    The architecture is given by stages, `depths` (blocks per stage): at each stage start after the first, q is
    strided (1, 2, 2) and width and heads double (`stage_lists`); q is pooled with stride 1 in every other block.
    `depth` is then sum(depths). PySlowFast's explicit per-block lists (pool_q_stride, dim_mul, head_mul) are
    accepted too: each one that is set (not None) overrides what depths would give; without depths they are the
    whole plan, with `depth` set (a None list is then empty).
    """

    # MODEL.*
    num_classes: int = 400
    dropout_rate: float = 0.5  # head dropout (MODEL.DROPOUT_RATE)
    act_checkpoint: bool = False  # recompute each block in backward (MODEL.ACT_CHECKPOINT)
    attention: str = "fused"  # "fused": SDPA with rel-pos folded in; "plain": the reference; "flex": FlexAttention
    # DATA.* (size the rel-pos tables / abs pos embeddings are built for)
    num_frames: int = 16
    crop_size: int = 224
    # MVIT.*
    depths: list[int] | None = None  # blocks per stage, e.g. MViTv2-S [1, 2, 11, 2]
    depth: int | None = None  # total blocks: sum(depths), filled in when None; needed without depths
    # PySlowFast's per-block lists; each one set overrides what depths gives (None: from depths, or none)
    pool_q_stride: list[list[int]] | None = None  # [[block, t, h, w], ...]
    dim_mul: list[list[float]] | None = None  # [[block, multiplier], ...]
    head_mul: list[list[float]] | None = None
    embed_dim: int = 96
    num_heads: int = 1
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    droppath_rate: float = 0.1
    patch_kernel: list[int] = field(default_factory=lambda: [3, 7, 7])
    patch_stride: list[int] = field(default_factory=lambda: [2, 4, 4])
    patch_padding: list[int] = field(default_factory=lambda: [1, 3, 3])
    cls_embed_on: bool = True
    use_abs_pos: bool = False
    sep_pos_embed: bool = False
    use_mean_pooling: bool = False
    norm_stem: bool = False
    pool_first: bool = False  # MViTv1 option; only False is implemented (all MViTv2 presets)
    pool_kvq_kernel: list[int] | None = field(default_factory=lambda: [3, 3, 3])
    pool_kv_stride_adaptive: list[int] | None = field(default_factory=lambda: [1, 8, 8])
    pool_kv_stride: list[list[int]] = field(default_factory=list)  # explicit, used when adaptive is None
    mode: str = "conv"  # conv | avg | max pooling of q, k, v
    rel_pos_spatial: bool = True
    rel_pos_temporal: bool = True
    rel_pos_zero_init: bool = False
    residual_pooling: bool = True
    dim_mul_in_att: bool = True
    separate_qkv: bool = False

    def __post_init__(self) -> None:
        _check_depths(self.depths)
        if self.depth is None and self.depths is not None:
            self.depth = sum(self.depths)
        self.validate()

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, prefix: str = "") -> "MViTConfig":
        """Build from a plain mapping (e.g. `dataclasses.asdict` of a config); unknown keys -> ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"unknown model config key {prefix}{unknown[0]!s}"
                f" (known: {', '.join(sorted(names))})"
            )
        return cls(**{k: _plain(v) for k, v in d.items()})

    # ---------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise ConfigError (message starts with the key) for a value the network cannot be built with."""
        _check_depths(self.depths)
        _check(self.depth is not None, "depth", "not set: give mvit.depths (blocks per stage), or mvit.depth with "
               "PySlowFast's per-block lists")
        if self.depths is not None:
            _check(self.depth == sum(self.depths), "depth", f"{self.depth} but mvit.depths {self.depths} sum to "
                   f"{sum(self.depths)}: set depths alone (depth follows), or depths null with per-block lists")
        _check(self.attention in ("fused", "plain", "flex"), "attention",
               f"must be fused, plain or flex, got {self.attention!r}")
        _check(self.mode in ("conv", "avg", "max"), "mode", f"must be conv, avg or max, got {self.mode!r}")
        _check(not self.pool_first, "pool_first", "only pool_first=false (MViTv2) is implemented")
        for key in ("num_classes", "depth", "embed_dim", "num_heads", "num_frames", "crop_size"):
            v = getattr(self, key)
            _check(isinstance(v, int) and not isinstance(v, bool) and v > 0, key, f"must be a positive int, got {v!r}")
        _check(0.0 <= self.dropout_rate < 1.0, "dropout_rate", f"must be in [0, 1), got {self.dropout_rate}")
        _check(0.0 <= self.droppath_rate < 1.0, "droppath_rate", f"must be in [0, 1), got {self.droppath_rate}")
        _check(self.mlp_ratio > 0, "mlp_ratio", f"must be > 0, got {self.mlp_ratio}")
        for key in ("patch_kernel", "patch_stride", "patch_padding"):
            _check_triple(getattr(self, key), key)
        if self.pool_kvq_kernel is not None:
            _check_triple(self.pool_kvq_kernel, "pool_kvq_kernel")
        if self.pool_kv_stride_adaptive is not None:
            _check_triple(self.pool_kv_stride_adaptive, "pool_kv_stride_adaptive")
        for key in ("pool_q_stride", "pool_kv_stride"):
            for entry in getattr(self, key) or []:
                _check(
                    isinstance(entry, (list, tuple)) and len(entry) == 4 and all(isinstance(s, int) for s in entry)
                    and 0 <= entry[0] < self.depth and all(s >= 1 for s in entry[1:]),
                    key, f"entries must be [block < depth, t, h, w] with strides >= 1, got {entry!r}",
                )
        for key in ("dim_mul", "head_mul"):
            for entry in getattr(self, key) or []:
                _check(
                    isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], int)
                    and 0 <= entry[0] <= self.depth and entry[1] > 0,
                    key, f"entries must be [block <= depth, multiplier > 0], got {entry!r}",
                )
        _check(
            self.crop_size % self.patch_stride[1] == 0 and self.num_frames % self.patch_stride[0] == 0,
            "crop_size", f"{self.crop_size} (and num_frames {self.num_frames}) must be divisible by patch_stride "
            f"{self.patch_stride}",
        )


def _plain(v: Any) -> Any:
    """Tuples -> lists (recursively) so asdict() survives torch.load(weights_only=True)."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {msg}")


def _check_depths(depths: Any) -> None:
    _check(
        depths is None or (isinstance(depths, (list, tuple)) and len(depths) > 0
                           and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in depths)),
        "depths", f"must be null or a list of positive ints (blocks per stage), got {depths!r}",
    )


def _check_triple(v: Any, key: str) -> None:
    _check(
        isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(x, int) and x >= 0 for x in v),
        key, f"must be a list of 3 non-negative ints [t, h, w], got {v!r}",
    )


# -------------------------------------------------------------------- per-block plan
@dataclass(frozen=True)
class BlockConfig:
    """Resolved settings of one MultiScaleBlock (like torchvision's MSBlockConfig)."""

    index: int
    dim_in: int
    dim_out: int  # width after the block (DIM_MUL_IN_ATT: the attention already projects to it)
    num_heads: int
    input_size: Triple  # (T, H, W) tokens entering the block
    kernel_q: Triple | None  # None: q not pooled (kernel and stride all 1, or no entry)
    stride_q: Triple
    kernel_kv: Triple | None
    stride_kv: Triple
    drop_path: float

    @property
    def output_size(self) -> Triple:
        """(T, H, W) tokens leaving the block (q stride applied)."""
        return tuple(s // st for s, st in zip(self.input_size, self.stride_q))  # type: ignore[return-value]

    attn_dim: int = 0  # width of q, k, v and the attention output (dim_out with DIM_MUL_IN_ATT, else dim_in)

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.attn_dim // self.num_heads


def round_width(width: float, multiplier: float, min_width: int = 1, divisor: int = 1) -> int:
    """PySlowFast's width rounding: width*multiplier to a multiple of divisor, not below 90% of it."""
    if not multiplier:
        return int(width)
    width *= multiplier
    min_width = min_width or divisor
    width_out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if width_out < 0.9 * width:
        width_out += divisor
    return int(width_out)


def _pool_kernel(kernel: list[int] | None, stride: list[int]) -> list[int]:
    """POOL_KVQ_KERNEL, or (s+1 if s>1 else s) per axis when it is not set."""
    return list(kernel) if kernel is not None else [s + 1 if s > 1 else s for s in stride]


def stage_lists(depths: Sequence[int]) -> dict[str, list]:
    """PySlowFast's per-block lists for stages of these depths (e.g. [1, 2, 11, 2]): q stride (1, 2, 2) and width
    and heads x2 at each stage start after the first, q stride 1 (pooled, not strided) in every other block."""
    starts = list(itertools.accumulate(depths))[:-1]
    return {
        "pool_q_stride": [[i, 1, 2, 2] if i in starts else [i, 1, 1, 1] for i in range(sum(depths))],
        "dim_mul": [[i, 2.0] for i in starts],
        "head_mul": [[i, 2.0] for i in starts],
    }


def per_block_lists(config: MViTConfig) -> dict[str, list]:
    """pool_q_stride, dim_mul and head_mul as the network uses them: each one the config sets, else from depths."""
    from_depths = stage_lists(config.depths) if config.depths is not None else {}
    lists = {}
    for key in ("pool_q_stride", "dim_mul", "head_mul"):
        value = getattr(config, key)
        lists[key] = [list(e) for e in value] if value is not None else from_depths.get(key, [])
    return lists


def block_configs(config: MViTConfig) -> list[BlockConfig]:
    """Resolve the stages and PySlowFast's per-block rules (strides, adaptive kv strides, widths, heads, drop path)."""
    depth = config.depth
    assert depth is not None  # filled in by MViTConfig
    lists = per_block_lists(config)
    dim_mul = [1.0] * (depth + 1)
    head_mul = [1.0] * (depth + 1)
    for i, m in lists["dim_mul"]:
        dim_mul[i] = float(m)
    for i, m in lists["head_mul"]:
        head_mul[i] = float(m)

    stride_q: list[list[int] | None] = [None] * depth
    kernel_q: list[list[int] | None] = [None] * depth
    for entry in lists["pool_q_stride"]:
        stride_q[entry[0]] = list(entry[1:])
        kernel_q[entry[0]] = _pool_kernel(config.pool_kvq_kernel, list(entry[1:]))

    kv_entries: list[list[int]] = [list(e) for e in config.pool_kv_stride]
    if config.pool_kv_stride_adaptive is not None:
        # The kv stride shrinks wherever q is strided so k/v keep a roughly constant number of tokens.
        kv = list(config.pool_kv_stride_adaptive)
        kv_entries = []
        for i in range(depth):
            if stride_q[i] is not None:
                kv = [max(kv[d] // stride_q[i][d], 1) for d in range(3)]  # type: ignore[index]
            kv_entries.append([i] + kv)
    stride_kv: list[list[int] | None] = [None] * depth
    kernel_kv: list[list[int] | None] = [None] * depth
    for entry in kv_entries:
        stride_kv[entry[0]] = list(entry[1:])
        kernel_kv[entry[0]] = _pool_kernel(config.pool_kvq_kernel, list(entry[1:]))

    # Stochastic depth grows linearly over blocks (torch.linspace(0, rate, depth), as float32 like PySlowFast).
    import torch  # here: composing a config (errors, --help) does not need torch

    drop_paths = torch.linspace(0, config.droppath_rate, depth, device="cpu").tolist()

    size = (
        config.num_frames // config.patch_stride[0],
        config.crop_size // config.patch_stride[1],
        config.crop_size // config.patch_stride[2],
    )
    blocks: list[BlockConfig] = []
    dim = config.embed_dim
    num_heads = config.num_heads
    for i in range(depth):
        num_heads = round_width(num_heads, head_mul[i])
        if config.dim_mul_in_att:
            # PySlowFast passes divisor=round_width(num_heads, head_mul[i]) with num_heads already updated.
            dim_out = round_width(dim, dim_mul[i], divisor=round_width(num_heads, head_mul[i]))
        else:
            dim_out = round_width(dim, dim_mul[i + 1], divisor=round_width(num_heads, head_mul[i + 1]))
        sq = stride_q[i] or [1, 1, 1]
        skv = stride_kv[i] or [1, 1, 1]
        kq = kernel_q[i] if stride_q[i] is not None else None
        kkv = kernel_kv[i] if stride_kv[i] is not None else None
        # A pooling with kernel and stride all 1 is the identity: skip it (as PySlowFast).
        if kq is not None and math.prod(kq) == 1 and math.prod(sq) == 1:
            kq = None
        if kkv is not None and math.prod(kkv) == 1 and math.prod(skv) == 1:
            kkv = None
        if kq is None:
            sq = [1, 1, 1]
        if kkv is None:
            skv = [1, 1, 1]
        blocks.append(
            BlockConfig(
                index=i,
                dim_in=dim,
                dim_out=dim_out,
                num_heads=num_heads,
                input_size=size,
                kernel_q=tuple(kq) if kq is not None else None,
                stride_q=tuple(sq),
                kernel_kv=tuple(kkv) if kkv is not None else None,
                stride_kv=tuple(skv),
                drop_path=drop_paths[i],
                attn_dim=dim_out if config.dim_mul_in_att else dim,
            )
        )
        size = tuple(s // st for s, st in zip(size, sq))  # type: ignore[assignment]
        dim = dim_out
    return blocks
