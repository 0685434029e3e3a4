"""The presets (conf/model, conf/experiment) against the paper and PySlowFast: architecture, recipe, parameters,
GFLOPs; each builds PySlowFast's per-block network; the stats CLI.

The tables below are the reference data (REFERENCE.md §1, PySlowFast's configs/{Kinetics,SSv2}/MVITv2_*.yaml and
the paper); the YAML files are the only runtime source, and these tests compare what they compose to.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest
import torch
from tiny import NETWORK

from mvit_video.config import CONF_DIR, build_config, compose
from mvit_video.models import MViT, MViTConfig, block_configs
from mvit_video.models.flops import count_gflops, count_params, sdpa_flop_jit
from mvit_video.stats import main as stats_main
from mvit_video.stats import model_stats


def _model(cfg) -> MViTConfig:
    """The MViTConfig the typed settings build from a composed config (model.*, mvit.*, data sizes)."""
    return build_config(cfg).model


class Arch(NamedTuple):
    depths: list[int]  # the paper's blocks per stage
    embed_dim: int
    num_heads: int
    stage_starts: list[int]  # PySlowFast's DIM_MUL/HEAD_MUL blocks (q strided (1, 2, 2) there, 1 elsewhere)
    droppath_rate: float  # K400 value
    act_checkpoint: bool
    params_k400: int  # parameters built for K400 16x224^2, 400 classes (as counted before presets became YAML)


# conf/model/*.yaml. T and H: the paper's stage depths with the S/B rules (PySlowFast ships no video config).
MODELS = {
    "mvit_t": Arch([1, 2, 5, 2], 96, 1, [1, 3, 8], 0.1, False, 23_801_104),
    "mvit_s": Arch([1, 2, 11, 2], 96, 1, [1, 3, 14], 0.2, False, 34_537_744),
    "mvit_b": Arch([2, 3, 16, 3], 96, 1, [2, 5, 21], 0.3, False, 51_193_264),
    "mvit_l": Arch([2, 6, 36, 4], 144, 2, [2, 8, 44], 0.75, True, 213_220_480),
    "mvit_h": Arch([4, 8, 60, 8], 192, 3, [4, 12, 72], 0.8, True, 666_363_856),
}


class Recipe(NamedTuple):
    model: str
    classes: int
    frames: int
    rate: int
    crop: int
    droppath: float
    optimizer: str
    base_lr: float
    epochs: int
    warmup: float
    batch: int
    views: int  # K temporal clips
    crops: int  # S spatial crops
    num_sample: int
    params: int  # exact count of the network it builds (as before presets became YAML)
    reference_params: float | None = None  # PySlowFast's count (REFERENCE.md §1)
    reference_gflops: float | None = None  # per view, fvcore (REFERENCE.md §1)


# conf/experiment/*.yaml: the paper's video rows with PySlowFast's recipe values.
EXPERIMENTS = {
    "k400_s_16x4": Recipe("mvit_s", 400, 16, 4, 224, 0.2, "adamw", 1e-4, 200, 30.0, 16, 5, 1, 2, 34_537_744,
                          34.54e6, 64.5),
    "k400_b_32x3": Recipe("mvit_b", 400, 32, 3, 224, 0.3, "adamw", 1e-4, 200, 30.0, 16, 5, 1, 2, 51_230_128,
                          51.23e6, 225.2),
    "k400_l_40x3_312": Recipe("mvit_l", 400, 40, 3, 312, 0.75, "adamw", 1e-4, 200, 30.0, 16, 5, 3, 1, 213_390_112,
                              213.39e6, 2828.0),
    "k600_b_32x3": Recipe("mvit_b", 600, 32, 3, 224, 0.3, "adamw", 1e-4, 200, 30.0, 16, 5, 1, 2, 51_383_928),
    "k600_l_40x3_312": Recipe("mvit_l", 600, 40, 3, 312, 0.75, "adamw", 1e-4, 200, 30.0, 16, 5, 3, 1, 213_620_712),
    "k700_b_32x3": Recipe("mvit_b", 700, 32, 3, 224, 0.3, "adamw", 1e-4, 200, 30.0, 16, 5, 1, 2, 51_460_828),
    "k700_l_40x3_312": Recipe("mvit_l", 700, 40, 3, 312, 0.75, "adamw", 1e-4, 200, 30.0, 16, 5, 3, 1, 213_736_012),
    "ssv2_s_16x4": Recipe("mvit_s", 174, 16, 4, 224, 0.4, "sgd", 0.0025, 100, 3.0, 16, 1, 3, 1, 34_363_950,
                          34.36e6),
    "ssv2_b_32x3": Recipe("mvit_b", 174, 32, 3, 224, 0.4, "sgd", 0.0015, 100, 3.0, 16, 1, 3, 1, 51_056_334,
                          51.06e6),
    "ssv2_l_40x3": Recipe("mvit_l", 174, 40, 3, 312, 0.75, "sgd", 0.00125, 40, 3.0, 8, 1, 3, 1, 213_129_534,
                          213.13e6),
}


def per_block_form(config: MViTConfig, stage_starts: list[int]) -> MViTConfig:
    """The same settings written as PySlowFast writes them: depth and explicit per-block lists, no stages."""
    depth = config.depth
    values = {**config.__dict__, "depths": None, "depth": depth}
    values["pool_q_stride"] = [[i, 1, 2, 2] if i in stage_starts else [i, 1, 1, 1] for i in range(depth)]
    values["dim_mul"] = [[i, 2.0] for i in stage_starts]
    values["head_mul"] = [[i, 2.0] for i in stage_starts]
    return MViTConfig(**values)


def _shapes(config: MViTConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes without allocating (H has 666 M parameters)
        return {k: tuple(v.shape) for k, v in MViT(config).state_dict().items()}


# ---------------------------------------------------------------- architectures
def test_every_model_and_experiment_file_is_checked():
    assert {p.stem for p in (CONF_DIR / "model").glob("*.yaml")} == set(MODELS) | {"mvit_tiny"}
    assert {p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")} == set(EXPERIMENTS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_yaml_is_the_papers_architecture(name):
    arch = MODELS[name]
    cfg = compose([f"model={name}", "data=kinetics"])
    config = _model(cfg)
    assert (config.depths, config.depth) == (arch.depths, sum(arch.depths))
    assert (config.embed_dim, config.num_heads) == (arch.embed_dim, arch.num_heads)
    assert config.droppath_rate == arch.droppath_rate and config.act_checkpoint == arch.act_checkpoint
    blocks = block_configs(config)
    assert [b.index for b in blocks if b.stride_q == (1, 2, 2)] == arch.stage_starts
    assert blocks[-1].dim_out == arch.embed_dim * 8 and blocks[-1].num_heads == arch.num_heads * 8
    with torch.device("meta"):
        assert count_params(MViT(config)) == arch.params_k400


def _all_configs() -> list[tuple[str, list[str], list[int]]]:
    cases = [(name, [f"model={name}"], arch.stage_starts) for name, arch in MODELS.items()]
    cases.append(("mvit_tiny", ["model=mvit_tiny"], [1, 3]))
    cases += [(name, [f"+experiment={name}"], MODELS[r.model].stage_starts) for name, r in EXPERIMENTS.items()]
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("name,overrides,starts", _all_configs(), ids=[c[0] for c in _all_configs()])
def test_stages_build_pyslowfasts_per_block_network(name, overrides, starts):
    """Every model and experiment file builds exactly the network of PySlowFast's explicit per-block lists (q
    stride and width/heads x2 at the stage starts): same block plan, same state-dict keys and shapes."""
    config = _model(compose(overrides))
    explicit = per_block_form(config, starts)
    assert block_configs(config) == block_configs(explicit)
    assert _shapes(config) == _shapes(explicit)


# ---------------------------------------------------------------- experiments
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_composes_with_official_recipe(name: str) -> None:
    r = EXPERIMENTS[name]
    cfg = build_config(compose([f"+experiment={name}"]))
    config = cfg.model
    arch = MODELS[r.model]
    assert cfg.name == name and cfg.output_dir == f"outputs/{name}"
    assert cfg.model.num_classes == r.classes
    assert (cfg.data.num_frames, cfg.data.sampling_rate) == (r.frames, r.rate)
    assert cfg.data.train_crop_size == cfg.data.test_crop_size == r.crop
    assert (config.depths, config.embed_dim, config.num_heads) == (arch.depths, arch.embed_dim, arch.num_heads)
    assert config.droppath_rate == r.droppath and cfg.model.dropout_rate == 0.5
    assert cfg.solver.optimizing_method == r.optimizer and cfg.solver.base_lr == pytest.approx(r.base_lr)
    assert cfg.solver.max_epoch == r.epochs and cfg.solver.warmup_epochs == r.warmup
    assert cfg.solver.cosine_end_lr == pytest.approx(1e-6)
    assert cfg.solver.zero_wd_1d_param and not cfg.solver.zero_decay_pos_cls
    assert cfg.train.batch_size == r.batch
    assert (cfg.test.num_ensemble_views, cfg.test.num_spatial_crops) == (r.views, r.crops)
    assert cfg.data.num_sample == r.num_sample
    assert cfg.aug.enable and cfg.aug.aa_type == "rand-m7-n4-mstd0.5-inc1" and cfg.mixup.enable
    large = r.model == "mvit_l"
    assert cfg.model.act_checkpoint == large and config.act_checkpoint == large
    assert list(config.pool_kv_stride_adaptive) == [1, 8, 8]
    # SSv2-L: PySlowFast normalised BGR frames with the RGB-ordered ImageNet mean, then reversed (REFERENCE §9)
    imagenet = [0.406, 0.456, 0.485] if name.startswith("ssv2") else [0.485, 0.456, 0.406]
    assert list(cfg.data.mean) == (imagenet if large else [0.45, 0.45, 0.45])
    assert cfg.mixup.prob == (0.0 if large else 1.0)
    if name.startswith("k"):
        assert cfg.data.dataset == "kinetics" and cfg.data.random_flip
        assert cfg.solver.weight_decay == 0.05 and cfg.solver.clip_grad_l2norm == 1.0
    else:
        assert cfg.data.dataset == "ssv2" and not cfg.data.random_flip and cfg.data.inv_uniform_sample
        assert cfg.solver.weight_decay == pytest.approx(1e-4) and cfg.solver.momentum == 0.9
        assert cfg.solver.clip_grad_l2norm == (2.0 if large else None)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_param_counts_match_pyslowfast(name):
    r = EXPERIMENTS[name]
    with torch.device("meta"):  # counts without allocating or running (L has 213 M parameters)
        model = MViT(_model(compose([f"+experiment={name}"])))
    params = count_params(model)
    assert params == r.params
    if r.reference_params is not None:
        assert params == pytest.approx(r.reference_params, rel=0.002)


@pytest.mark.slow
def test_gflops_mvit_s_matches_pyslowfast():
    """Full size (16x224^2), through the stats command's function: what the README's table reports."""
    r = EXPERIMENTS["k400_s_16x4"]
    stats = model_stats(build_config(compose(["+experiment=k400_s_16x4"])))
    assert stats["gflops_per_view"] == pytest.approx(r.reference_gflops, rel=0.01)
    assert stats["params"] == r.params and stats["views"] == [r.views, r.crops]


@pytest.mark.slow
def test_count_gflops_restores_the_fused_path(tiny):
    model = MViT(tiny())
    count_gflops(model, (1, 3, 8, 32, 32))
    assert all(m.fused for m in model.modules() if hasattr(m, "fused"))  # restored after counting


@pytest.mark.slow
def test_fused_model_counts_like_plain(tiny):
    config = tiny()
    fused = count_gflops(MViT(config), (1, 3, 8, 32, 32))
    plain = count_gflops(MViT(MViTConfig(**{**config.__dict__, "attention": "plain"})), (1, 3, 8, 32, 32))
    assert fused == pytest.approx(plain, rel=1e-9) and fused > 0


def test_sdpa_is_counted():
    from fvcore.nn import FlopCountAnalysis

    class Attn(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 4)
    analysis = FlopCountAnalysis(Attn(), (q, k, v)).set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False)
    assert analysis.total() == 2 * 3 * 10 * 6 * (8 + 4)


# ---------------------------------------------------------------- stats CLI
@pytest.mark.slow
def test_stats_cli_prints_table_then_json(capsys):
    stats_main([*NETWORK, "test.num_ensemble_views=4", "test.num_spatial_crops=3"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == {"params", "gflops_per_view", "views"}
    assert result["views"] == [4, 3] and isinstance(result["params"], int) and result["gflops_per_view"] > 0
    assert any("GFLOPs x views" in line and "x 4 x 3" in line for line in lines)
    assert any("3 blocks" in line for line in lines)  # the tiny network's


def test_stats_cli_bad_key_is_one_line_error(capsys):
    with pytest.raises(SystemExit) as exc:
        stats_main(["+mvit.depht=3"])
    assert exc.value.code == 2
    assert "mvit.depht" in capsys.readouterr().err


@pytest.mark.slow
def test_stats_cli_depth_disagreeing_with_depths_is_one_line_error(capsys):
    with pytest.raises(SystemExit) as exc:
        stats_main(["mvit.depth=4"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "config key 'mvit.depth': 4 but mvit.depths [1, 2, 2] sum to 5" in err and len(err.strip().splitlines()) == 1

