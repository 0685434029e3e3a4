"""How training compiles the network (train.compile, train.compile_mode) and keeps the compiled code across restarts.

Regional compilation (train.compile_mode=regional; `full` stays the default until a GPU has measured it): each
MultiScaleBlock is compiled on its own, not the whole network as one graph.
The blocks of a stage have one shape and one code object, so Dynamo compiles one graph per distinct block shape
(7 for S, 8 for B and L: 16, 24 and 48 blocks) and every other block of that shape reuses it; the stem, the head
and the loop over blocks run eagerly (a few small ops). The drop-path rate is a tensor (MultiScaleBlock.drop_prob),
so blocks that differ only in their rate share a graph; shapes are static (dynamic=False): the train step has one
batch size (drop_last) and val/test chunks are padded to one (eval/multiview.py pads what `is_compiled` accepts).

Cache artifacts: `torch.compiler.save_cache_artifacts()` (Inductor's code, AOTAutograd's graphs, autotuning) is
written beside the checkpoints, keyed by torch version and device name, and loaded before the first step of a
resumed or requeued run: the compile then reads the caches instead of generating code. A file from another torch
or device is ignored with one log line.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from mvit_video.utils.io import atomic_write

logger = logging.getLogger(__name__)

COMPILE_MODES = ("regional", "full", "nested")


class RegionallyCompiled(nn.Module):
    """What the train step and val/test call when the blocks are compiled one by one: the network itself.

    It stands where torch.compile's OptimizedModule would: the network is `_orig_mod` (so checkpoint key prefixes,
    `distributed.unwrap` and `multiview.is_compiled`, which pads eval chunks to one shape, treat both alike).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._orig_mod = model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._orig_mod(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # model attributes (forward_features, config, ...) as on OptimizedModule
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "_orig_mod":  # not set yet (during construction or copying): no recursion
                raise
            return getattr(self._orig_mod, name)


def distinct_block_shapes(model: nn.Module) -> int:
    """How many different block graphs the network needs: blocks with equal settings and input size share one."""
    configs = getattr(model, "block_configs", None)
    if configs is None:
        return len(list(_blocks(model)))
    return count_block_shapes(configs)


def count_block_shapes(configs: Iterable[Any]) -> int:
    """distinct_block_shapes from the block configs (models.config.block_configs) alone."""
    # drop_path is a tensor input, not part of the graph: blocks that differ only in it share their code.
    keys = {(b.dim_in, b.dim_out, b.num_heads, tuple(b.input_size), tuple(b.kernel_q or ()), tuple(b.stride_q),
             tuple(b.kernel_kv or ()), tuple(b.stride_kv), b.drop_path > 0) for b in configs}
    return len(keys)


def _blocks(model: nn.Module) -> Iterable[nn.Module]:
    return getattr(model, "blocks", [])


def set_recompile_limit(needed: int) -> None:
    """Raise Dynamo's per-code-object cache (recompile) limit to `needed` if it is lower.

    All blocks run one code object (MultiScaleBlock.forward), so each distinct block shape, in train and in eval
    mode, is one cache entry of it; past the limit Dynamo would silently fall back to eager for the rest.
    """
    import torch._dynamo.config as dynamo_config

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    if getattr(dynamo_config, name) < needed:
        setattr(dynamo_config, name, needed)


def compile_model(model: nn.Module, mode: str = "regional", **compile_kwargs: Any) -> nn.Module:
    """The compiled callable of `model` for train steps and val/test (same object: eval reuses the regions).

    mode "regional": each block compiled (`nn.Module.compile`, in place), returned in a RegionallyCompiled;
    "full": torch.compile of the whole network (one graph; compiles for minutes on the large presets);
    "nested": the whole network in one graph, each block a `torch.compiler.nested_compile_region` (traced once per
    shape and stamped out); experimental, for comparison on a GPU; "regional" where the torch lacks it.
    compile_kwargs go to torch.compile (tests pass backend="aot_eager").
    """
    if mode == "full":
        allow_custom_function_caching()
        return torch.compile(model, **compile_kwargs)
    if mode == "nested" and hasattr(torch.compiler, "nested_compile_region") and list(_blocks(model)):
        allow_custom_function_caching()
        region = torch.compiler.nested_compile_region(type(next(iter(_blocks(model)))).forward)
        for block in _blocks(model):
            block.forward = region.__get__(block)  # one marked function shared by every block
        compile_kwargs.setdefault("dynamic", False)
        return torch.compile(model, **compile_kwargs)
    if mode == "nested":
        logger.info("torch.compiler.nested_compile_region is not in torch %s: compiling regionally",
                    torch.__version__)
        mode = "regional"
    if mode != "regional":
        raise ValueError(f"compile mode {mode!r}: expected one of {COMPILE_MODES}")
    blocks = list(_blocks(model))
    if not blocks:  # not a block-structured network: nothing regional to do
        return torch.compile(model, **compile_kwargs)
    compile_kwargs.setdefault("dynamic", False)
    allow_custom_function_caching()
    # train and eval (no grad) of each shape are separate entries; act checkpointing's recompute reuses train's.
    set_recompile_limit(2 * distinct_block_shapes(model) + 2)
    for block in blocks:
        block.compile(**compile_kwargs)
    return RegionallyCompiled(model)


# ---------------------------------------------------------------------------------------------- cache artifacts
CACHE_DIR = "compile_cache"


def cache_key(device: torch.device) -> str:
    """torch version and device name, as a file-name-safe string: a cache is only valid for both."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = device.type
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", f"torch{torch.__version__}-{name}")


def cache_path(output_dir: Path, device: torch.device) -> Path:
    """Where this run's compile cache artifacts live: <output_dir>/checkpoints/compile_cache/<key>.bin."""
    return Path(output_dir) / "checkpoints" / CACHE_DIR / f"{cache_key(device)}.bin"


def code_version() -> str:
    """A hash of the network's source (mvit_video/models/*.py): Inductor's and AOTAutograd's own cache keys cover
    the traced graphs, but not the source of custom autograd.Functions (ops.GeluLinearFn), so a cache written by
    other model code is not reused."""
    import hashlib

    import mvit_video.models as models

    h = hashlib.sha256()
    for path in sorted(Path(models.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def allow_custom_function_caching() -> None:
    """Let AOTAutograd cache graphs that hold a custom autograd.Function (ops.GeluLinearFn, ops.DepthwiseConv3dFn):
    off by default because its source is not in the cache key; `code_version` in the artifacts' header covers it."""
    import torch._functorch.config as functorch_config

    if hasattr(functorch_config, "autograd_cache_allow_custom_autograd_functions"):
        functorch_config.autograd_cache_allow_custom_autograd_functions = True


def _header(device: torch.device) -> dict[str, str]:
    return {"torch": torch.__version__, "device": cache_key(device), "code": code_version()}


def save_cache_artifacts(output_dir: Path, device: torch.device) -> Path | None:
    """Write the compiler's cache artifacts (what this process compiled or loaded) beside the checkpoints,
    atomically (temp file + rename). A small JSON header line names torch and the device. None: nothing to save."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return None
    data, _info = saved
    header = json.dumps(_header(device)).encode() + b"\n"
    path = cache_path(output_dir, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(header + data))  # the checkpoints' temp file + fsync + rename
    logger.info("compile cache: saved %.1f MB to %s", (len(header) + len(data)) / 1e6, path)
    return path


def load_cache_artifacts(output_dir: Path, device: torch.device) -> bool:
    """Load this run's saved cache artifacts before compiling; True when loaded. A cache of another torch or
    device (or an unreadable one) is ignored with one log line: the run compiles from scratch."""
    folder = Path(output_dir) / "checkpoints" / CACHE_DIR
    if not folder.is_dir():
        return False
    path = cache_path(output_dir, device)
    others = sorted(p.name for p in folder.glob("*.bin") if p != path)
    if not path.is_file():
        if others:
            logger.info("compile cache: %s is for another torch or device (this one: %s); compiling from scratch",
                        ", ".join(others), cache_key(device))
        return False
    try:
        raw = path.read_bytes()
        head, _, data = raw.partition(b"\n")
        header, want = json.loads(head), _header(device)
        if header != want:
            logger.info("compile cache: %s was written for %s (this run: %s); ignored, compiling from scratch", path,
                        header, want)
            return False
        torch_log = logging.getLogger("torch.compiler._cache")  # it logs a corrupt file with a traceback
        level = torch_log.level
        torch_log.setLevel(logging.ERROR)
        try:
            info = torch.compiler.load_cache_artifacts(data)
        finally:
            torch_log.setLevel(level)
        if info is None:
            raise ValueError("not readable as torch.compiler cache artifacts")
    except Exception as e:  # a cache is an optimisation: a bad one must never stop training
        logger.info("compile cache: %s could not be loaded (%s: %s); compiling from scratch", path,
                    type(e).__name__, e)
        return False
    logger.info("compile cache: loaded %s", path)
    return True
