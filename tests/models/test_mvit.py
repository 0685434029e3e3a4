"""The MViT network: PySlowFast key names, shapes, other input sizes, init, checkpointing, bf16, compile."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mvit_video.config import build_config, compose
from mvit_video.models import MViT, MViTConfig, build_model
from mvit_video.models.attention import rel_pos_distance, rel_pos_lookup, resize_rel_pos


def _model(cfg) -> MViTConfig:
    """The MViTConfig the typed settings build from a composed config (model.*, mvit.*, data sizes)."""
    return build_config(cfg).model


# q strided in time too and k/v pooled (2, 4, 4): q and k of different lengths along t as well as h and w
POOLED_T = dict(pool_q_stride=[[0, 1, 1, 1], [1, 2, 2, 2], [2, 1, 1, 1]], pool_kv_stride_adaptive=[2, 4, 4])


def _x(config, batch=2, t=None, s=None):
    return torch.randn(batch, 3, t or config.num_frames, s or config.crop_size, s or config.crop_size)


def test_state_dict_uses_pyslowfast_key_names(tiny):
    model = MViT(tiny())
    sd = model.state_dict()
    expected = {
        "cls_token": (1, 1, 16),
        "patch_embed.proj.weight": (16, 3, 3, 7, 7),
        "patch_embed.proj.bias": (16,),
        "blocks.0.norm1.weight": (16,),
        "blocks.0.attn.qkv.weight": (48, 16),
        "blocks.0.attn.qkv.bias": (48,),
        "blocks.0.attn.proj.weight": (16, 16),
        "blocks.0.attn.pool_q.weight": (16, 1, 3, 3, 3),
        "blocks.0.attn.pool_k.weight": (16, 1, 3, 3, 3),
        "blocks.0.attn.pool_v.weight": (16, 1, 3, 3, 3),
        "blocks.0.attn.norm_q.weight": (16,),
        "blocks.0.attn.norm_k.bias": (16,),
        "blocks.0.attn.rel_pos_h": (2 * 8 - 1, 16),  # 2*max(q 8, kv 8//4)-1
        "blocks.0.attn.rel_pos_w": (15, 16),
        "blocks.0.attn.rel_pos_t": (2 * 4 - 1, 16),
        "blocks.0.mlp.fc1.weight": (64, 16),
        "blocks.0.mlp.fc2.weight": (16, 64),
        "blocks.0.norm2.bias": (16,),
        "blocks.1.proj.weight": (32, 16),  # width change 16 -> 32: residual is proj(norm1(x))
        "blocks.1.attn.qkv.weight": (96, 16),
        "blocks.1.attn.pool_q.weight": (16, 1, 3, 3, 3),  # per head: 2 heads of 16
        "blocks.1.attn.rel_pos_h": (2 * 4 - 1, 16),  # q 8//2=4, kv 8//2=4
        "blocks.1.norm2.weight": (32,),
        "norm.weight": (32,),
        "head.projection.weight": (5, 32),
        "head.projection.bias": (5,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "blocks.0.proj.weight" not in sd and "blocks.2.proj.weight" not in sd
    assert all(k.startswith(("cls_token", "patch_embed.", "blocks.", "norm.", "head.")) for k in sd)


def test_forward_shapes_and_logits(tiny):
    config = tiny()
    model = MViT(config).eval()
    out = model(_x(config))
    assert out.shape == (2, 5) and out.dtype == torch.float32
    # logits: the head's linear output, no softmax after it (PySlowFast applies one in eval mode)
    x = _x(config)
    torch.testing.assert_close(model(x), model.head.projection(model.forward_features(x)))


def test_other_input_sizes_interpolate_rel_pos(tiny):
    config = tiny(**POOLED_T)
    model = MViT(config).eval()
    for t, s in [(4, 32), (8, 48), (12, 64)]:
        assert model(_x(config, 1, t, s)).shape == (1, 5)
    # Running at 12x48^2 equals a model built for 12x48^2 whose tables are the linearly resized ones.
    big = MViT(dataclasses.replace(config, num_frames=12, crop_size=48)).eval()
    state = model.state_dict()
    for key, value in big.state_dict().items():
        if "rel_pos" in key:
            state[key] = resize_rel_pos(state[key], value.shape[0])
    big.load_state_dict(state)
    x = _x(config, 1, 12, 48)
    torch.testing.assert_close(model(x), big(x))


def test_build_size_is_an_exact_no_op(tiny, monkeypatch):
    """At the build size the rel-pos tables are used as they are: no interpolation runs anywhere in the model
    (another size does interpolate), and resizing to a table's own length returns that very table."""
    config = tiny()
    model = MViT(config).eval()
    calls = []
    interpolate = torch.nn.functional.interpolate
    monkeypatch.setattr(torch.nn.functional, "interpolate", lambda *a, **k: calls.append(1) or interpolate(*a, **k))
    model(_x(config, 1))
    assert calls == []
    model(_x(config, 1, 12, 48))
    assert calls
    table = model.blocks[0].attn.rel_pos_h  # 15 rows; q 8, k 2 along H
    assert resize_rel_pos(table, 15) is table
    assert torch.equal(rel_pos_lookup(table, 8, 2), table[rel_pos_distance(8, 2)])


def test_pyslowfast_init(tiny):
    model = MViT(tiny())
    assert torch.all(model.blocks[0].norm1.bias == 0.02) and torch.all(model.blocks[0].norm1.weight == 1)
    assert torch.all(model.blocks[0].attn.qkv.bias == 0.02) and torch.all(model.head.projection.bias == 0.02)
    w = model.blocks[0].mlp.fc1.weight
    assert abs(w.std().item() - 0.02) < 0.004  # trunc_normal(std=0.02), truncated at +-2 as in PySlowFast
    assert 0.01 < model.cls_token.std() < 0.03 and 0.01 < model.blocks[0].attn.rel_pos_t.std() < 0.03


def test_reset_classifier(tiny):
    model = MViT(tiny())
    model.reset_classifier(11)
    assert model(_x(model.config, 1)).shape == (1, 11)
    assert torch.all(model.head.projection.bias == 0.02) and model.config.num_classes == 11


def test_drop_path_and_head_dropout_only_in_training(tiny):
    model = MViT(tiny(droppath_rate=0.5, dropout_rate=0.5))
    x = _x(model.config)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


@pytest.mark.parametrize("has_cls", [True, False])
def test_fused_model_equals_plain_model(tiny, has_cls):
    config = tiny(cls_embed_on=has_cls, **POOLED_T)
    fused = MViT(config).train()
    plain = MViT(dataclasses.replace(config, attention="plain")).train()
    plain.load_state_dict(fused.state_dict())
    x = _x(config)
    out_f, out_p = fused(x), plain(x)
    torch.testing.assert_close(out_f, out_p, atol=1e-5, rtol=1e-5)
    out_f.square().sum().backward()
    out_p.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        scale = max(1.0, p.grad.abs().max().item())
        assert (q.grad - p.grad).abs().max().item() <= 1e-5 * scale, name


@pytest.mark.parametrize(
    "overrides",
    [
        # avg/max pooling refuse inputs smaller than the kernel (even padded): keep T at 4 tokens.
        dict(mode="avg", pool_q_stride=[[1, 1, 2, 2]], pool_kv_stride_adaptive=[1, 4, 4]),
        dict(mode="max", pool_q_stride=[[1, 1, 2, 2]], pool_kv_stride_adaptive=[1, 4, 4]),
        dict(use_mean_pooling=True),
        dict(cls_embed_on=False),
        dict(use_abs_pos=True, rel_pos_spatial=False, rel_pos_temporal=False),
        dict(use_abs_pos=True, sep_pos_embed=True, norm_stem=True),
        dict(residual_pooling=False, rel_pos_temporal=False, separate_qkv=True),
        dict(dim_mul_in_att=False, rel_pos_zero_init=True),
    ],
)
def test_options_run_and_train(tiny, overrides):
    model = MViT(tiny(**overrides)).train()
    out = model(_x(model.config))
    out.sum().backward()
    assert out.shape == (2, 5)
    assert all(p.grad is not None for n, p in model.named_parameters() if "rel_pos" not in n or "zero" in n)
    model.eval()
    assert model(_x(model.config, 1, 8, 48)).shape == (1, 5)  # other size: abs pos / rel pos resized


def test_separate_qkv_and_abs_pos_key_names(tiny):
    sd = MViT(tiny(separate_qkv=True, use_abs_pos=True)).state_dict()
    assert {"blocks.0.attn.q.weight", "blocks.0.attn.k.weight", "blocks.0.attn.v.weight", "pos_embed"} <= set(sd)
    sd = MViT(tiny(use_abs_pos=True, sep_pos_embed=True)).state_dict()
    assert {"pos_embed_spatial", "pos_embed_temporal", "pos_embed_class"} <= set(sd)


def test_bf16_autocast_runs_and_is_close(tiny):
    model = MViT(tiny()).eval()
    x = _x(model.config)
    ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.05 * max(1.0, ref.abs().max().item())
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x).float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_build_model_from_default_config():
    cfg = compose([])
    model = build_model(_model(cfg))
    assert model.config.num_frames == cfg.data.num_frames and model.config.num_classes == cfg.model.num_classes
    x = torch.randn(1, 3, cfg.data.num_frames, cfg.data.train_crop_size, cfg.data.train_crop_size)
    assert model(x).shape == (1, cfg.model.num_classes)


def _compile_case(tiny):
    config = tiny(depths=None, depth=2, pool_q_stride=[[0, 1, 1, 1], [1, 1, 2, 2]], dim_mul=[], head_mul=[],
                  num_frames=4)
    return MViT(config), _x(config, 1)


@pytest.mark.slow
def test_torch_compile_fullgraph_matches_eager(tiny):
    """Dynamo captures the whole model in one graph (no graph breaks), forward and backward match eager.

    Uses the aot_eager backend (Dynamo + AOTAutograd, no C++ codegen) to stay a few seconds on 2 cores;
    the inductor test below does the full compile.
    """
    torch._dynamo.reset()
    model, x = _compile_case(tiny)
    model.train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out_c, out_e = compiled(x), model(x)
    torch.testing.assert_close(out_c, out_e)
    grad_c = torch.autograd.grad(out_c.sum(), model.blocks[1].attn.rel_pos_h)
    grad_e = torch.autograd.grad(out_e.sum(), model.blocks[1].attn.rel_pos_h)
    torch.testing.assert_close(grad_c, grad_e)


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager(tiny):
    """A tiny model compiles with the default (inductor) backend on CPU and matches eager."""
    torch._dynamo.reset()
    model, x = _compile_case(tiny)
    model.eval()
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fields", [{}, {"use_abs_pos": True}, {"use_abs_pos": True, "sep_pos_embed": True},
                                    {"use_abs_pos": True, "sep_pos_embed": True, "cls_embed_on": False},
                                    {"rel_pos_spatial": False}])
def test_no_weight_decay_names_the_position_tables_and_cls_token(tiny, fields):
    """timm's / PySlowFast's no_weight_decay: full parameter names of the class token, the absolute position
    embeddings and every attention's rel-pos tables, whichever of them the configuration has."""
    config = tiny(**fields)
    model = MViT(config)
    names = model.no_weight_decay()
    assert names <= dict(model.named_parameters()).keys()
    assert ("cls_token" in names) == config.cls_embed_on
    assert ({"pos_embed_spatial", "pos_embed_temporal"} <= names) == (config.use_abs_pos and config.sep_pos_embed)
    assert ("pos_embed" in names) == (config.use_abs_pos and not config.sep_pos_embed)
    rel = {f"blocks.{i}.attn.rel_pos_{a}" for i in range(config.depth) for a in "hw" if config.rel_pos_spatial}
    rel |= {f"blocks.{i}.attn.rel_pos_t" for i in range(config.depth) if config.rel_pos_temporal}
    assert rel and rel <= names
    assert all(n in rel or "rel_pos" not in n for n in names)  # no other rel-pos parameter
    assert not any(n.endswith((".weight", ".bias")) for n in names)


def test_get_classifier_is_the_layer_reset_classifier_replaces(tiny):
    model = MViT(tiny())
    assert model.get_classifier() is model.head.projection and model.get_classifier().out_features == 5
    model.reset_classifier(11)
    assert model.get_classifier() is model.head.projection and model.get_classifier().out_features == 11
