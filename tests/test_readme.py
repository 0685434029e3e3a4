"""The README cannot drift from the code (issue 20, item 5): its code blocks are parsed and checked.

- every shell command it shows names something that exists: `python -m mvit_video.X` modules, `mvit-*` entry
  points of pyproject.toml, `scripts/...` files, `pip install -e ".[extra]"` extras, `+experiment=NAME` presets and
  `group=NAME` config groups;
- the `key=value` overrides of every train/evaluate/stats command compose (the keys exist in conf/);
- every `--option` an argparse command is shown with appears in that command's `--help`, and `--help` of every
  command shown runs (slow: one interpreter per command);
- the Python examples run as written (slow), in a folder holding what they name: a checkpoint at the path shown
  and real videos written with PyAV;
- every dotted `mvit_video.X` name in the prose imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
ENTRY_POINTS: dict[str, str] = PYPROJECT["project"]["scripts"]
HYDRA_COMMANDS = {"mvit_video.train", "mvit_video.evaluate", "mvit_video.stats"}


def code_blocks(lang: str) -> list[str]:
    """The README's fenced code blocks of language `lang`, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def shell_commands() -> list[str]:
    """Each command of the bash blocks: continuation lines joined, comments dropped, `a && b` split."""
    out = []
    for block in code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.extend(part.strip() for part in line.split("&&"))
    return out


def words(command: str) -> list[str]:
    """Shell words, with the README's notation for optional parts (`[--topk 5]`) unwrapped."""
    return [w.strip("[]") for w in shlex.split(command) if w.strip("[]") and w not in ("...", "[key=value", "...]")]


def module_of(command: str) -> str | None:
    """The package module a command runs: `python -m mvit_video.X`, `torchrun ... -m mvit_video.X`, `mvit-x`."""
    w = words(command)
    if w[0] in ENTRY_POINTS:
        return ENTRY_POINTS[w[0]].split(":")[0]
    for i, word in enumerate(w[:-1]):
        if word == "-m" and w[i + 1].startswith("mvit_video"):
            return w[i + 1]
    return None


COMMANDS = shell_commands()
MODULE_COMMANDS = [c for c in COMMANDS if module_of(c)]


def test_the_readme_shows_the_installed_commands():
    shown = {words(c)[0] for c in COMMANDS}
    assert {"mvit-infer", "mvit-export", "mvit-convert", "mvit-extract", "mvit-prepare-kinetics",
            "mvit-prepare-ssv2", "mvit-check-dataset"} <= shown
    assert not [c for c in COMMANDS if words(c)[:2] == ["python", "scripts/infer.py"]]  # the old form only in prose


@pytest.mark.parametrize("command", COMMANDS)
def test_every_shell_command_names_what_exists(command: str):
    w = words(command)
    if w[0].startswith("mvit-"):
        assert w[0] in ENTRY_POINTS, f"{w[0]} is not an entry point in pyproject.toml"
    module = module_of(command)
    if module is not None:
        assert importlib.util.find_spec(module) is not None, f"no module {module}"
    for word in w:
        if word.startswith("scripts/"):
            assert (REPO / word).is_file(), word
        extra = re.fullmatch(r"\.\[(\w+)\]", word)
        if extra:
            assert extra.group(1) in PYPROJECT["project"]["optional-dependencies"], word
        name = word.split("=", 1)
        if word.startswith("+experiment="):
            assert (REPO / "conf" / "experiment" / f"{name[1]}.yaml").is_file(), word
        elif len(name) == 2 and "/" in name[0] and not name[0].startswith("-"):  # hydra/launcher=mvit_slurm
            assert (REPO / "conf" / name[0] / f"{name[1]}.yaml").is_file(), word


def _overrides(command: str) -> list[str]:
    """The config overrides of a train/evaluate/stats command line (Hydra's own settings left to Hydra)."""
    return [w for w in words(command) if "=" in w and not w.startswith("-")
            and not w.split("=")[0].lstrip("+").startswith("hydra")]


@pytest.mark.parametrize("command", [c for c in MODULE_COMMANDS if module_of(c) in HYDRA_COMMANDS])
def test_config_overrides_shown_compose(command: str):
    from mvit_video.config import compose

    compose(_overrides(command))  # a key that does not exist raises ConfigError naming it


def test_python_examples_import_only_the_public_api():
    import mvit_video

    for block in code_blocks("python"):
        for names in re.findall(r"^from mvit_video import (.+)$", block, flags=re.M):
            for name in (n.strip() for n in names.split(",")):
                assert name in mvit_video.__all__, f"README imports {name}, not in mvit_video.__all__"


def test_dotted_names_in_the_prose_import():
    """`mvit_video.a.b` in the text: a module, or an attribute of one (the deprecated path shown must warn)."""
    for dotted in sorted(set(re.findall(r"`(mvit_video(?:\.\w+)+)", README))):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            if importlib.util.find_spec(".".join(parts[:cut])) is not None:
                break
        obj = importlib.import_module(".".join(parts[:cut]))
        for attr in parts[cut:]:
            if dotted == "mvit_video.models.load_model":
                with pytest.warns(DeprecationWarning, match="mvit_video.load_model"):
                    obj = getattr(obj, attr)
            else:
                obj = getattr(obj, attr)


def _help(module: str) -> str:
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_help_of_every_command_shown_lists_its_options():
    helps: dict[str, str] = {}
    for command in MODULE_COMMANDS:
        module = module_of(command)
        text = helps.setdefault(module, _help(module))
        assert text.startswith("usage:"), f"{module} --help: {text[:80]!r}"
        for option in (w.split("=")[0] for w in words(command) if w.startswith("--")):
            assert option in text, f"README shows {option} for {module}, its --help does not know it"


@pytest.mark.slow
def test_python_examples_run_as_written(tmp_path: Path, monkeypatch):
    """The README's Python blocks, verbatim, in a folder holding the checkpoint path and videos they name."""
    import torch
    from tiny import CLIPS, NETWORK, indexed_frames

    from mvit_video.checkpoint import make_checkpoint
    from mvit_video.config import build_config, compose
    from mvit_video.data.encode import write_video
    from mvit_video.models import build_model
    from mvit_video.settings import CheckpointData
    from mvit_video.utils.io import atomic_torch_save

    blocks = code_blocks("python")
    paths = sorted(set(re.findall(r'"([^"]+\.(?:pyth|mp4))"', "\n".join(blocks))))
    run = build_config(compose([*NETWORK, *CLIPS, "model.num_classes=3", "test.num_ensemble_views=2"]))
    torch.manual_seed(0)
    checkpoint = make_checkpoint(build_model(run.model), run.model, CheckpointData.from_run(run).to_dict(),
                                 ["left", "right", "up"])
    for i, name in enumerate(paths):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".pyth"):
            atomic_torch_save(checkpoint, path)
        else:  # timeline(window=2.0) needs a few seconds of video
            write_video(path, indexed_frames(150 if "long" in name else 30, height=40, width=48, seed=i), fps=30.0)
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 -- the documentation's own code
    assert namespace["run"].data.num_frames == 32 and namespace["net"].config.depth == 16  # the last block's names
