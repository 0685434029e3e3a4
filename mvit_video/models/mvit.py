"""MViTv2 for video (Li et al., "MViTv2: Improved Multiscale Vision Transformers", CVPR 2022).

Parameter names equal PySlowFast's state-dict keys (cls_token, patch_embed.proj, blocks.{i}.attn.qkv, ...) so
its checkpoints load by name. Tokens are [B, N, C] with N = (1 if cls) + T*H*W, spatial tokens in t, h, w order.

Where this differs from a line-by-line port, it is for speed or memory, never for the function computed:
- attention through F.scaled_dot_product_attention with the rel-pos terms folded into q/k (attention.py);
- q/k/v pooling with heads kept in the channel axis; on CPU on the token layout itself (channels-last, no permute
  copy), on CUDA on contiguous NCDHW (native depthwise kernels; cuDNN's channels-last one is pathological);
- a depthwise-conv input gradient ~10x faster than aten's on CPU (ops.DepthwiseConv3dFn, CPU only);
- the MLP recomputes GELU in backward instead of storing its output (ops.GeluLinearFn): ~13% less activation
  memory (not under activation checkpointing, which already recomputes the block);
- cls-token splits use `split` so their backward is one concatenation, not zero-filled full-size gradients.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from mvit_video.models.attention import Size3, flex_attention, fused_attention, plain_attention
from mvit_video.models.config import BlockConfig, MViTConfig, block_configs
from mvit_video.models.ops import DepthwiseConv3dFn, GeluLinearFn

logger = logging.getLogger(__name__)

LAYER_NORM_EPS = 1e-6


def drop_path(x: Tensor, p: float | Tensor | None, training: bool) -> Tensor:
    """Stochastic depth: zero the whole residual branch for a random subset of samples, rescale the rest.

    p: the drop probability, a float or a 0-d tensor (None: no drop path).
    """
    if p is None or not training or (isinstance(p, float) and p == 0.0):
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


def pool_tokens(x: Tensor, pool: nn.Module, thw: Size3, has_cls: bool) -> tuple[Tensor, Size3]:
    """Apply a 3-D pooling to the spatial tokens of x [B, N, C]; the cls token passes through.

    The pooling gets a channels-last view ([B, C, T, H, W] with C innermost, i.e. the token layout itself); a conv
    pool makes it the layout its device is fastest with (`depthwise_memory_format`).
    """
    # split (not slicing): its backward is one cat, not a zero-filled full-size gradient per slice.
    cls_tok, x = x.split([1, x.shape[1] - 1], dim=1) if has_cls else (None, x)
    B, L, C = x.shape
    T, H, W = thw
    grid = x.reshape(B, T, H, W, C).permute(0, 4, 1, 2, 3)  # (B, C, T, H, W), channels-last strides
    grid = pool(grid)
    thw_out = (grid.shape[2], grid.shape[3], grid.shape[4])
    x = grid.permute(0, 2, 3, 4, 1).reshape(B, -1, C)  # back to tokens (B, L', C)
    if cls_tok is not None:
        x = torch.cat([cls_tok, x], dim=1)
    return x, thw_out


class HeadwiseConv3d(nn.Conv3d):
    """Depthwise Conv3d over head_dim channels shared by all heads (PySlowFast's pool_q/k/v, same weight shape).

    PySlowFast folds heads into the batch ([B*heads, head_dim, T, H, W]), which needs a permute copy; here the
    heads stay in the channel axis ([B, heads*head_dim, ...], groups = heads*head_dim, weight repeated per
    head), which is the same function on the token layout.
    """

    def __init__(self, head_dim: int, num_heads: int, kernel: Size3, stride: Size3) -> None:
        super().__init__(
            head_dim, head_dim, kernel, stride=stride, padding=[k // 2 for k in kernel], groups=head_dim, bias=False
        )
        self.num_heads = num_heads

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, heads*head_dim, T, H, W] -> pooled [B, heads*head_dim, T', H', W'] (layout per device)."""
        weight = self.weight if self.num_heads == 1 else self.weight.repeat(self.num_heads, 1, 1, 1, 1)
        x = x.contiguous(memory_format=depthwise_memory_format(x.device.type))
        if use_custom_depthwise_backward(x.device.type) and torch.is_grad_enabled():
            return DepthwiseConv3dFn.apply(x, weight.to(x.dtype), tuple(self.stride), tuple(self.padding))
        return F.conv3d(x, weight.to(x.dtype), None, self.stride, self.padding, 1, x.shape[1])


def depthwise_memory_format(device_type: str) -> torch.memory_format:
    """The layout the depthwise pooling conv gets on each device: each device's fastest correct kernels.

    CPU: channels-last, i.e. the token layout itself (no copy), where oneDNN's depthwise kernels are fast.
    CUDA (and anything else): contiguous NCDHW. A channels-last grouped 3-D conv goes to cuDNN, whose bf16
    depthwise *weight gradient* took 95% of an H200 train step (0.38x torchvision's speed, issue #9); NCDHW input
    goes to PyTorch's native conv_depthwise3d kernels, as torchvision's model does.
    """
    return torch.channels_last_3d if device_type == "cpu" else torch.contiguous_format


def use_custom_depthwise_backward(device_type: str) -> bool:
    """Only on CPU does aten's depthwise-3-D backward need replacing (DepthwiseConv3dFn); CUDA's native one is fast."""
    return device_type == "cpu"


def make_pool(mode: str, kernel: Size3 | None, stride: Size3, head_dim: int, num_heads: int) -> nn.Module | None:
    """Pooling of q or k/v: depthwise conv (per head), or avg/max pooling; None when the kernel is skipped."""
    if kernel is None:
        return None
    padding = [k // 2 for k in kernel]
    if mode == "conv":
        return HeadwiseConv3d(head_dim, num_heads, kernel, stride)
    if mode == "avg":
        return nn.AvgPool3d(kernel, stride, padding, ceil_mode=False)
    return nn.MaxPool3d(kernel, stride, padding, ceil_mode=False)


class MultiScaleAttention(nn.Module):
    """Pooling attention: project to q, k, v, pool each (strided conv/avg/max), attend with decomposed
    relative positions, add the pooled q back (residual pooling), project."""

    def __init__(self, block: BlockConfig, config: MViTConfig) -> None:
        super().__init__()
        dim, dim_out = block.dim_in, block.attn_dim
        self.num_heads = block.num_heads
        self.head_dim = dim_out // block.num_heads
        self.has_cls = config.cls_embed_on
        self.residual_pooling = config.residual_pooling
        self.fused, self.flex = config.attention == "fused", config.attention == "flex"
        self.separate_qkv = config.separate_qkv
        if config.separate_qkv:
            self.q = nn.Linear(dim, dim_out, bias=config.qkv_bias)
            self.k = nn.Linear(dim, dim_out, bias=config.qkv_bias)
            self.v = nn.Linear(dim, dim_out, bias=config.qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim_out, bias=config.qkv_bias)
        self.proj = nn.Linear(dim_out, dim_out)

        hd, heads = self.head_dim, self.num_heads
        self.pool_q = make_pool(config.mode, block.kernel_q, block.stride_q, hd, heads)
        self.pool_k = make_pool(config.mode, block.kernel_kv, block.stride_kv, hd, heads)
        self.pool_v = make_pool(config.mode, block.kernel_kv, block.stride_kv, hd, heads)
        conv = config.mode == "conv"
        self.norm_q = nn.LayerNorm(hd, eps=LAYER_NORM_EPS) if conv and self.pool_q is not None else None
        self.norm_k = nn.LayerNorm(hd, eps=LAYER_NORM_EPS) if conv and self.pool_k is not None else None
        self.norm_v = nn.LayerNorm(hd, eps=LAYER_NORM_EPS) if conv and self.pool_v is not None else None

        # Tables sized for the build input: 2*max(q, kv)-1 rows along H/W (after strides), 2*T_in-1 along T.
        T, H, W = block.input_size
        self.rel_pos_h = self.rel_pos_w = self.rel_pos_t = None
        if config.rel_pos_spatial:
            size = H
            q_size = size // block.stride_q[1]
            kv_size = size // block.stride_kv[1]
            rows = 2 * max(q_size, kv_size) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(rows, hd))
            self.rel_pos_w = nn.Parameter(torch.zeros(rows, hd))
        if config.rel_pos_temporal:
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * T - 1, hd))
        if not config.rel_pos_zero_init:
            for table in (self.rel_pos_h, self.rel_pos_w, self.rel_pos_t):
                if table is not None:
                    nn.init.trunc_normal_(table, std=0.02)

    def _pool(self, x: Tensor, pool: nn.Module | None, norm: nn.Module | None, thw: Size3) -> tuple[Tensor, Size3]:
        """Pool tokens x [B, N, heads*hd] and layer-norm per head -> [B, heads, N', hd]."""
        B = x.shape[0]
        if pool is not None:
            x, thw = pool_tokens(x, pool, thw, self.has_cls)
        x = x.reshape(B, x.shape[1], self.num_heads, self.head_dim)
        if norm is not None:
            x = norm(x)
        return x.transpose(1, 2), thw

    def forward(self, x: Tensor, thw: Size3) -> tuple[Tensor, Size3]:
        """x: [B, N, dim_in] with N = cls + T*H*W -> ([B, N_q, dim_out], q's (T, H, W))."""
        B, N, _ = x.shape
        if self.separate_qkv:
            q, k, v = self.q(x), self.k(x), self.v(x)
        else:
            q, k, v = self.qkv(x).reshape(B, N, 3, -1).unbind(2)  # each (B, N, heads*hd)
        q, q_thw = self._pool(q, self.pool_q, self.norm_q, thw)  # (B, heads, Nq, hd)
        k, k_thw = self._pool(k, self.pool_k, self.norm_k, thw)
        v, _ = self._pool(v, self.pool_v, self.norm_v, thw)

        attend = flex_attention if self.flex else fused_attention if self.fused else plain_attention
        out = attend(q, k, v, q_thw, k_thw, self.has_cls, self.rel_pos_t, self.rel_pos_h, self.rel_pos_w)

        out = out.transpose(1, 2)  # (B, Nq, heads, hd)
        if self.residual_pooling:
            # Adding in the token layout fuses the add with the layout change; the cls row gets no residual.
            q = q.transpose(1, 2)
            if self.has_cls:
                out_cls, out_sp = out.split([1, out.shape[1] - 1], dim=1)
                out = torch.cat([out_cls, out_sp + q.split([1, out_sp.shape[1]], dim=1)[1]], dim=1)
            else:
                out = out + q
        out = out.reshape(B, -1, self.num_heads * self.head_dim)
        return self.proj(out), q_thw


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2.

    recompute_act: in training, fc2(act(h)) runs as ops.GeluLinearFn, which keeps h instead of the GELU output
    and recomputes it in backward. Off where the caller already recomputes the block (activation checkpointing:
    a second recompute would save nothing), and never used unless `act` is an nn.GELU (its `approximate` is
    passed on), so replacing `act` changes what is computed, not silently ignored.
    """

    def __init__(self, dim_in: int, hidden: int, dim_out: int, recompute_act: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim_in, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim_out)
        self.recompute_act = recompute_act

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if self.recompute_act and isinstance(self.act, nn.GELU) and torch.is_grad_enabled() and h.requires_grad:
            return GeluLinearFn.apply(h, self.fc2.weight, self.fc2.bias, self.act.approximate)
        return self.fc2(self.act(h))


class MultiScaleBlock(nn.Module):
    """x + attn(norm1(x)) with the shortcut max-pooled to q's resolution, then x + mlp(norm2(x))."""

    def __init__(self, block: BlockConfig, config: MViTConfig) -> None:
        super().__init__()
        self.dim, self.dim_out = block.dim_in, block.dim_out
        self.dim_mul_in_att = config.dim_mul_in_att
        self.has_cls = config.cls_embed_on
        self.drop_path_rate = block.drop_path
        # The rate is a 0-d buffer, not a Python float: torch.compile guards on a float attribute's value, so each
        # block's rate (linear in depth) would compile the block anew; a tensor is an input (engine/compile.py).
        self.register_buffer("drop_prob", torch.tensor(block.drop_path) if block.drop_path > 0 else None,
                             persistent=False)
        att_dim = block.attn_dim
        self.norm1 = nn.LayerNorm(self.dim, eps=LAYER_NORM_EPS)
        self.attn = MultiScaleAttention(block, config)
        self.norm2 = nn.LayerNorm(att_dim, eps=LAYER_NORM_EPS)
        # Under activation checkpointing the block is recomputed in backward anyway: no GELU recompute on top.
        hidden = int(att_dim * config.mlp_ratio)
        self.mlp = Mlp(att_dim, hidden, self.dim_out, recompute_act=not config.act_checkpoint)
        if self.dim != self.dim_out:
            self.proj = nn.Linear(self.dim, self.dim_out)
        # Shortcut pooling: kernel s+1 for strided axes, so every input token is covered.
        if math.prod(block.stride_q) > 1:
            kernel = [s + 1 if s > 1 else s for s in block.stride_q]
            self.pool_skip = nn.MaxPool3d(kernel, block.stride_q, [k // 2 for k in kernel], ceil_mode=False)
        else:
            self.pool_skip = None

    def forward(self, x: Tensor, thw: Size3) -> tuple[Tensor, Size3]:
        """x: [B, N, dim] -> ([B, N', dim_out], new (T, H, W))."""
        x_norm = self.norm1(x)
        x_block, thw_new = self.attn(x_norm, thw)
        if self.dim_mul_in_att and self.dim != self.dim_out:
            x = self.proj(x_norm)
        if self.pool_skip is not None:
            x, _ = pool_tokens(x, self.pool_skip, thw, self.has_cls)
        x = x + drop_path(x_block, self.drop_prob, self.training)
        x_norm = self.norm2(x)
        x_mlp = self.mlp(x_norm)
        if not self.dim_mul_in_att and self.dim != self.dim_out:
            x = self.proj(x_norm)
        return x + drop_path(x_mlp, self.drop_prob, self.training), thw_new


class PatchEmbed(nn.Module):
    """Conv3d cube embedding: [B, 3, T, H, W] -> tokens [B, T'*H'*W', C] and (T', H', W')."""

    def __init__(self, dim_out: int, kernel: list[int], stride: list[int], padding: list[int]) -> None:
        super().__init__()
        self.proj = nn.Conv3d(3, dim_out, kernel, stride=stride, padding=padding)

    def forward(self, x: Tensor) -> tuple[Tensor, Size3]:
        x = self.proj(x)
        thw = (x.shape[2], x.shape[3], x.shape[4])
        return x.flatten(2).transpose(1, 2), thw


class TransformerHead(nn.Module):
    """Dropout -> Linear (PySlowFast's TransformerBasicHead without the eval-time softmax: returns logits)."""

    def __init__(self, dim: int, num_classes: int, dropout_rate: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()
        self.projection = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(self.dropout(x))


# The class token, absolute position embeddings (joint or separate) and the rel-pos tables of each attention.
_POSITION_AND_CLS = frozenset({"cls_token", "pos_embed", "pos_embed_spatial", "pos_embed_temporal", "pos_embed_class",
                               "rel_pos_h", "rel_pos_w", "rel_pos_t"})


class MViT(nn.Module):
    """Multiscale Vision Transformer v2 for video classification: [B, 3, T, H, W] -> logits [B, num_classes]."""

    def __init__(self, config: MViTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.block_configs = block_configs(config)
        embed_dim = config.embed_dim
        self.has_cls = config.cls_embed_on
        self.patch_embed = PatchEmbed(embed_dim, config.patch_kernel, config.patch_stride, config.patch_padding)
        self.patch_dims: Size3 = self.block_configs[0].input_size
        num_patches = math.prod(self.patch_dims)
        if self.has_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.use_abs_pos = config.use_abs_pos
        self.sep_pos_embed = config.sep_pos_embed
        if config.use_abs_pos:
            t, h, w = self.patch_dims
            if config.sep_pos_embed:
                self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, embed_dim))
                self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, embed_dim))
                if self.has_cls:
                    self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, embed_dim))
            else:
                self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + int(self.has_cls), embed_dim))
        self.norm_stem = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS) if config.norm_stem else None
        self.blocks = nn.ModuleList(MultiScaleBlock(b, config) for b in self.block_configs)
        self.num_features = self.block_configs[-1].dim_out
        self.norm = nn.LayerNorm(self.num_features, eps=LAYER_NORM_EPS)
        self.head = TransformerHead(self.num_features, config.num_classes, config.dropout_rate)
        self.act_checkpoint = config.act_checkpoint
        self._init_weights()

    @property
    def act_checkpoint(self) -> bool:
        """Recompute each block in backward (training only); the MLPs then keep their GELU output."""
        return self._act_checkpoint

    @act_checkpoint.setter
    def act_checkpoint(self, on: bool) -> None:
        # One recompute at a time: the MLP's own GELU recompute (ops.GeluLinearFn) is off inside a checkpointed block.
        self._act_checkpoint = bool(on)
        for block in self.blocks:
            block.mlp.recompute_act = not on

    # ------------------------------------------------------------------ init
    def _init_weights(self) -> None:
        """PySlowFast init: trunc-normal(0.02) Linear/Conv weights and tokens; Linear and LayerNorm bias 0.02."""
        for name, p in self.named_parameters():
            if name in ("cls_token", "pos_embed", "pos_embed_spatial", "pos_embed_temporal", "pos_embed_class"):
                nn.init.trunc_normal_(p, std=0.02)
        self.apply(_init_module)

    # ------------------------------------------------------------------ what the model knows about its parameters
    def no_weight_decay(self) -> set[str]:
        """Names of the parameters exempt from weight decay when solver.zero_decay_pos_cls is on: the class token,
        the absolute position embeddings and the rel-pos tables (PySlowFast's and timm's `no_weight_decay`; full
        names, as named_parameters gives them)."""
        return {name for name, _ in self.named_parameters() if name.rpartition(".")[2] in _POSITION_AND_CLS}

    def get_classifier(self) -> nn.Linear:
        """The classifier layer (timm's name): what fine-tuning on other classes re-initialises."""
        return self.head.projection

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with num_classes outputs."""
        old = self.head.projection
        self.head.projection = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        _init_module(self.head.projection)
        self.config.num_classes = num_classes

    # ------------------------------------------------------------------ forward
    def _abs_pos(self, thw: Size3) -> Tensor:
        """Absolute position embedding for tokens of size thw (trilinear resize when thw != build size)."""
        if self.sep_pos_embed:
            t, h, w = self.patch_dims
            pos = self.pos_embed_spatial.repeat(1, t, 1) + torch.repeat_interleave(self.pos_embed_temporal, h * w, 1)
            cls_pos = self.pos_embed_class if self.has_cls else None
        else:
            pos = self.pos_embed[:, int(self.has_cls):]
            cls_pos = self.pos_embed[:, :1] if self.has_cls else None
        if tuple(thw) != tuple(self.patch_dims):
            C = pos.shape[-1]
            grid = pos.reshape(1, *self.patch_dims, C).permute(0, 4, 1, 2, 3)
            pos = F.interpolate(grid, size=thw, mode="trilinear").reshape(1, C, -1).transpose(1, 2)
        if cls_pos is not None:
            pos = torch.cat([cls_pos, pos], dim=1)
        return pos

    def forward_features(self, x: Tensor) -> Tensor:
        """[B, 3, T, H, W] -> pooled, normalised features [B, C]."""
        x, thw = self.patch_embed(x)
        if self.has_cls:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.use_abs_pos:
            x = x + self._abs_pos(thw)
        if self.norm_stem is not None:
            x = self.norm_stem(x)
        for block in self.blocks:
            if self.act_checkpoint and self.training and torch.is_grad_enabled():
                x, thw = torch.utils.checkpoint.checkpoint(block, x, thw, use_reentrant=False)
            else:
                x, thw = block(x, thw)
        if self.config.use_mean_pooling:
            if self.has_cls:
                x = x[:, 1:]
            return self.norm(x.mean(1))
        x = self.norm(x)
        return x[:, 0] if self.has_cls else x.mean(1)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, T, H, W] (normalised) -> logits [B, num_classes]."""
        return self.head(self.forward_features(x))


def _init_module(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.constant_(m.bias, 0.02)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.weight, 1.0)
        nn.init.constant_(m.bias, 0.02)


def build_model(config: MViTConfig) -> MViT:
    """Build the network a typed config describes (mvit_video.config.build_config makes it from the Hydra config)."""
    model = MViT(config)
    logger.info(
        "built MViT: %d blocks, %.2f M params, input %dx%d^2",
        config.depth, sum(p.numel() for p in model.parameters()) / 1e6, config.num_frames, config.crop_size,
    )
    return model
