"""The package's import graph (#22 "A house without loops"): no import cycle and no import that runs back up a layer.

Every module's imports are read from its source (AST), those inside functions included (a lazy import is still an
arrow: it runs the module it names), those under `if TYPE_CHECKING:` left out (annotations only, never run).
Layers, top to bottom; a module may import from its own layer (without a cycle) and from any layer below:

1. entry points and the edges they share: `mvit_video/__init__.py`, train, evaluate, cli, api, stats,
   summary, infer, extract, export_model, convert_checkpoint, prepare_*, check_dataset; `config` (the Hydra edge:
   compose, then typed settings; it checks a data folder through data.synthetic, so it sits above data, with the
   commands that call it, not with the settings it builds) and `predict` (the public Predictor, which infer,
   extract and api wrap).
2. `engine/`: the training run; it calls eval's validate/test.
3. `eval/`: scoring, metrics, reports (never the training engine).
4. `checkpoint/`: our file format, RNG state, pretrained loading (through models.convert, never the other way).
5. `data/` and `models/` (side by side; neither imports the other).
6. `settings` and `models.config`: the typed settings; settings holds an MViTConfig, so models.config sits here, not
   with the network (models/__init__.py imports only it eagerly and the network lazily, so importing
   `mvit_video.models.config` stays light).
7. `utils/`: errors, io, deprecation, process groups (distributed), progress.

An arrow goes to the module that is imported (`from mvit_video.data import loader` -> mvit_video.data.loader); the
package `__init__`s that Python runs on the way are not arrows of their own (they are kept light: lazy names).
Names resolved by importlib from strings are not imports and not arrows: mvit_video/__init__.py's public API table,
and the deprecated aliases of utils.deprecation.moved, which lead to where a name moved for one release (two of
them up a layer: models.load_model & co. and models.convert.named_checkpoint, now in checkpoint/).
"""

from __future__ import annotations

import ast
from collections.abc import Container, Iterable, Mapping, Sequence
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mvit_video"

# (layer, module names): a name stands for that module and, for a package, everything under it; the longest name
# that matches places a module (mvit_video.models.config is in "settings", the rest of mvit_video.models in "data,
# models"). "mvit_video" alone is the package's __init__.py.
LAYERS: list[tuple[str, list[str]]] = [
    ("entry points", ["mvit_video", "mvit_video.train", "mvit_video.evaluate",
                      "mvit_video.cli", "mvit_video.api", "mvit_video.stats", "mvit_video.summary", "mvit_video.infer",
                      "mvit_video.extract", "mvit_video.export_model", "mvit_video.convert_checkpoint",
                      "mvit_video.prepare_kinetics", "mvit_video.prepare_ssv2", "mvit_video.check_dataset",
                      "mvit_video.config", "mvit_video.predict"]),
    ("engine", ["mvit_video.engine"]),
    ("eval", ["mvit_video.eval"]),
    ("checkpoint", ["mvit_video.checkpoint"]),
    ("data, models", ["mvit_video.data", "mvit_video.models"]),
    ("settings", ["mvit_video.settings", "mvit_video.models.config"]),
    ("utils", ["mvit_video.utils"]),
]  # fmt: skip

Arrow = tuple[str, str, str]  # (importing module, imported module, "file:line")


# ------------------------------------------------------------------------------------------------ reading imports


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file of `package` (a package is its __init__.py)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[str, int]]:
    """(dotted name, line) of every import in `source`, at any depth (functions, methods, try blocks), except under
    `if TYPE_CHECKING:`. `from a import b` gives "a.b" (b may be a module or a name in a); relative imports are
    made absolute."""
    found: list[tuple[str, int]] = []
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:  # `else:` of TYPE_CHECKING runs
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)
        visit(node)

    visit(ast.parse(source))
    return found


def resolve(name: str, modules: Container[str]) -> str | None:
    """The module an imported dotted name runs: the longest prefix of `name` that is a module of ours."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def package_arrows(package: Path) -> list[Arrow]:
    """Every import between two modules of `package`, from the sources (see the module docstring)."""
    files = module_files(package)
    arrows: dict[Arrow, None] = {}  # ordered set: `from a import b, c` on one line is one arrow when b, c are names
    for module, path in files.items():
        for name, line in imported_names(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"):
            target = resolve(name, files)
            if target is not None and target != module:
                arrows[(module, target, f"{path.relative_to(package.parent)}:{line}")] = None
    return list(arrows)


# ------------------------------------------------------------------------------------------------ checking them


def place(module: str, layers: Sequence[tuple[str, Sequence[str]]]) -> tuple[int, str]:
    """(layer index, unit) of `module`: the unit is the longest entry of `layers` that is the module or a package
    above it. KeyError for a module no layer names (a new top-level module must be placed)."""
    best: tuple[int, str] | None = None
    for index, (_, names) in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (index, name)
    if best is None:
        raise KeyError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best


def upward(arrows: Iterable[Arrow], layers: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """One line per arrow from a module to a module of a higher layer."""
    out = []
    for source, target, where in arrows:
        (low, _), (high, _) = place(source, layers), place(target, layers)
        if high < low:
            out.append(f"{where}: {source} ({layers[low][0]}) imports {target} ({layers[high][0]}), a layer above")
    return out


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted: every import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(edges) | {t for ts in edges.values() for t in ts})

    def strongconnect(v: str) -> None:  # recursion depth <= number of modules (about a hundred)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            strongconnect(v)
    return found


def shortest_cycle(edges: Mapping[str, set[str]], members: set[str]) -> list[str]:
    """A shortest closed path through `members` (one strongly connected component), as [a, b, ..., a]."""
    best: list[str] = []
    for start in sorted(members):
        parent: dict[str, str] = {}
        queue = [start]
        for node in queue:  # breadth first: the first way back to `start` is a shortest one
            if start in edges.get(node, set()):
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                cycle = [*reversed(path), start]
                if not best or len(cycle) < len(best):
                    best = cycle
                break
            for nxt in sorted(edges.get(node, set()) & members):
                if nxt != start and nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
    return best


def cycle_report(arrows: Sequence[Arrow], layers: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """One line per cycle between modules, and per cycle between the units of `layers` (packages such as engine
    and eval, top-level modules): its members and a shortest closed path, each arrow with its file:line."""
    out = []
    for what, key in (("modules", lambda m: m), ("packages", lambda m: place(m, layers)[1])):
        edges: dict[str, set[str]] = {}
        where: dict[tuple[str, str], str] = {}
        for source, target, at in arrows:
            if key(source) != key(target):
                edges.setdefault(key(source), set()).add(key(target))
                where.setdefault((key(source), key(target)), f"{source} -> {target} at {at}")
        for component in cycles(edges):
            path = shortest_cycle(edges, set(component))
            steps = "; ".join(where[pair] for pair in zip(path, path[1:]))
            out.append(f"import cycle between {what} {', '.join(component)}: {' -> '.join(path)} ({steps})")
    return out


# ------------------------------------------------------------------------------------------------ tests


def test_the_checker_finds_an_upward_import_and_a_cycle_in_a_tiny_graph():
    """The checker on a fake graph: a clean one passes; an arrow planted up a layer and a cycle (inside a
    function too) are each reported, naming file and line."""
    layers = [("top", ["pkg.main"]), ("middle", ["pkg.engine", "pkg.eval"]), ("bottom", ["pkg.utils"])]
    clean = [("pkg.main", "pkg.engine.loop", "main.py:1"), ("pkg.engine.loop", "pkg.eval.score", "loop.py:3"),
             ("pkg.eval.score", "pkg.utils.dist", "score.py:2")]
    assert upward(clean, layers) == [] and cycle_report(clean, layers) == []
    planted = [*clean, ("pkg.utils.dist", "pkg.engine.loop", "dist.py:9")]
    assert upward(planted, layers) == [
        "dist.py:9: pkg.utils.dist (bottom) imports pkg.engine.loop (middle), a layer above"]
    assert cycle_report(planted, layers)[0] == (
        "import cycle between modules pkg.engine.loop, pkg.eval.score, pkg.utils.dist: pkg.engine.loop -> "
        "pkg.eval.score -> pkg.utils.dist -> pkg.engine.loop (pkg.engine.loop -> pkg.eval.score at loop.py:3; "
        "pkg.eval.score -> pkg.utils.dist at score.py:2; pkg.utils.dist -> pkg.engine.loop at dist.py:9)")
    sideways = [*clean, ("pkg.eval.other", "pkg.engine.run", "other.py:4")]  # no module cycle, a package one
    assert upward(sideways, layers) == []
    assert cycle_report(sideways, layers) == [
        "import cycle between packages pkg.engine, pkg.eval: pkg.engine -> pkg.eval -> pkg.engine "
        "(pkg.engine.loop -> pkg.eval.score at loop.py:3; pkg.eval.other -> pkg.engine.run at other.py:4)"]
    with pytest.raises(KeyError, match="pkg.new is in no layer"):
        place("pkg.new", layers)


def test_imports_are_read_inside_functions_and_not_under_type_checking():
    source = '''
from typing import TYPE_CHECKING
import mvit_video.utils.io
from mvit_video.data import loader, build_dataset
if TYPE_CHECKING:
    from mvit_video.settings import RunConfig
else:
    from mvit_video import cli
def main():
    from mvit_video.engine import trainer
    class Late:
        def go(self):
            from . import sibling
            from ..utils import errors
'''
    names = [n for n, _ in imported_names(source, "mvit_video.eval.testing", is_package=False)]
    assert names == ["typing.TYPE_CHECKING", "mvit_video.utils.io", "mvit_video.data.loader",
                     "mvit_video.data.build_dataset", "mvit_video.cli", "mvit_video.engine.trainer",
                     "mvit_video.eval.sibling", "mvit_video.utils.errors"]
    modules = {"mvit_video.data", "mvit_video.data.loader", "mvit_video.utils.io"}
    assert resolve("mvit_video.data.build_dataset", modules) == "mvit_video.data"
    assert resolve("mvit_video.data.loader", modules) == "mvit_video.data.loader"
    assert resolve("torch.nn", modules) is None


def test_every_module_has_a_layer_and_every_layer_entry_exists():
    modules = module_files(PACKAGE)
    for module in modules:
        place(module, LAYERS)
    assert not [name for _, names in LAYERS for name in names if name not in modules]  # no stale entry


def test_no_import_cycle_and_no_import_up_a_layer():
    """All violations at once (one line each, with file:line), so one run lists everything left to fix."""
    arrows = package_arrows(PACKAGE)
    assert len(arrows) > 100  # the graph was read (about 150 arrows between modules in 2026-12)
    problems = cycle_report(arrows, LAYERS) + upward(arrows, LAYERS)
    assert not problems, f"{len(problems)} import-graph problem(s):\n" + "\n".join(problems)
