"""Installed commands (issue 20, item 6): pyproject's console scripts, `pip install -e .` installing them, their
`--help` (a usage line and examples), the old `scripts/*.py` wrappers, and start-up that does not import what a
command does not need (item 13)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
EXPECTED = {
    "mvit-train": "train", "mvit-evaluate": "evaluate", "mvit-infer": "infer", "mvit-extract": "extract",
    "mvit-summary": "summary", "mvit-stats": "stats", "mvit-export": "export_model",
    "mvit-convert": "convert_checkpoint", "mvit-prepare-kinetics": "prepare_kinetics",
    "mvit-prepare-ssv2": "prepare_ssv2", "mvit-check-dataset": "check_dataset",
}
# The old command lines that became package commands: scripts/<tool>.py -> python -m mvit_video.<tool>
MOVED = ["infer", "export_model", "convert_checkpoint", "prepare_kinetics", "prepare_ssv2", "check_dataset"]
EXAMPLE = re.compile(r"^\s+(mvit-[a-z-]+|python (-m mvit_video\.|scripts/)|torchrun )", flags=re.M)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def test_pyproject_declares_every_command_as_module_main():
    assert {name: target for name, target in SCRIPTS.items()} == {
        name: f"mvit_video.{module}:main" for name, module in EXPECTED.items()}
    for target in SCRIPTS.values():
        module, func = target.split(":")
        source = REPO / (module.replace(".", "/") + ".py")
        tree = ast.parse(source.read_text())
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)} or \
            any(isinstance(n, ast.ImportFrom) and func in [a.asname or a.name for a in n.names] for n in tree.body), \
            f"{source} has no {func}"


def _check_help(text: str, command: str) -> None:
    """--help: the first line is the usage line under the command's name; example command lines follow."""
    assert text.startswith(f"usage: {command}"), f"{command}: {text[:120]!r}"
    assert EXAMPLE.search(text), f"{command} --help shows no example command line"


@pytest.mark.slow
def test_pip_install_e_installs_the_entry_points(tmp_path: Path):
    """`pip install -e .` into a throwaway venv (the dependencies seen through a .pth pointing at this
    interpreter's site-packages, so nothing is downloaded): the distribution's console_scripts are pyproject's,
    and each installed command answers --help with its usage line and examples."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    site = Path(subprocess.run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, hydra, pip, setuptools
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, not the checkout path
    install = subprocess.run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", "-e", str(REPO)], capture_output=True, text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = ("import importlib.metadata as m, json; d = m.distribution('mvit_video'); "
             "print(json.dumps({e.name: e.value for e in d.entry_points if e.group == 'console_scripts'}))")
    installed = json.loads(subprocess.run([bin_dir / "python", "-c", probe], capture_output=True, text=True,
                                          env=env, cwd=tmp_path, check=True).stdout)  # no egg-info of a checkout
    assert installed == SCRIPTS
    for name in SCRIPTS:
        proc = subprocess.run([bin_dir / name, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-1000:]}"
        _check_help(proc.stdout, name)


@pytest.mark.slow
@pytest.mark.parametrize("tool", MOVED)
def test_old_script_is_a_thin_wrapper_with_the_same_command_line(tool: str):
    """`python scripts/<tool>.py ARGS` runs `python -m mvit_video.<tool> ARGS`: the same --help (but for the
    program name) and the same one-line error for a bad argument, plus one deprecation line naming the command."""
    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO, env=_env(),
                              timeout=300)

    script, module = run(f"scripts/{tool}.py", "--help"), run("-m", f"mvit_video.{tool}", "--help")
    assert script.returncode == module.returncode == 0
    after_usage = lambda text: text.split("\n\n", 1)[1]  # noqa: E731 -- the usage line wraps by the prog's length
    assert script.stdout.startswith("usage: ") and after_usage(script.stdout) == after_usage(module.stdout)
    command = next(name for name, module in EXPECTED.items() if module == tool)
    assert script.stderr.strip().splitlines() == [
        f"scripts/{tool}.py:0: DeprecationWarning: `python scripts/{tool}.py` still works but is deprecated: use "
        f"`{command}` (same options)"]
    bad_script, bad_module = run(f"scripts/{tool}.py", "--no-such-option"), run("-m", f"mvit_video.{tool}",
                                                                               "--no-such-option")
    assert bad_script.returncode == bad_module.returncode == 2
    error = lambda proc: proc.stderr.strip().splitlines()[-1].split(": error: ")[1]  # noqa: E731 -- after the prog
    assert error(bad_script) == error(bad_module)


HEAVY = ("torch", "torchvision", "tensorboard", "fvcore", "decord", "av", "matplotlib", "onnx", "hydra")


@pytest.mark.slow
@pytest.mark.parametrize("argv,allowed", [
    (["mvit_video.train", "--help"], set()),
    (["mvit_video.evaluate", "--help"], set()),
    (["mvit_video.train", "data.num_frame=3"], {"hydra"}),  # a config error: Hydra composes, nothing else loads
    (["mvit_video.evaluate", "data.num_frame=3"], {"hydra"}),
    # a wrong value: the whole config is checked before torch is imported (an error in 0.3 s, not 4)
    (["mvit_video.train", "solver.optimizing_method=adam"], {"hydra"}),
    (["mvit_video.evaluate", "solver.optimizing_method=adam"], {"hydra"}),
    (["mvit_video.stats", "--help"], set()),
    (["mvit_video.summary", "--help"], set()),
    (["mvit_video.infer", "--help"], set()),
    (["mvit_video.export_model", "--help"], set()),
    (["mvit_video.extract", "--help"], set()),
    (["mvit_video.convert_checkpoint", "--help"], set()),
    (["mvit_video.prepare_kinetics", "--help"], set()),
    (["mvit_video.prepare_ssv2", "--help"], set()),
    (["mvit_video.check_dataset", "--help"], set()),
])
def test_commands_start_without_heavy_imports(argv: list[str], allowed: set[str]):
    """`--help`, a wrong key and a wrong value answer before torch & co. are imported (seconds of CPU each)."""
    probe = ("import runpy, sys, json, atexit\n"
             f"heavy = {HEAVY!r}\n"
             "atexit.register(lambda: print(json.dumps(sorted(h for h in heavy if h in sys.modules)), "
             "file=sys.__stderr__))\n"
             f"sys.argv = ['{argv[0]}', *{argv[1:]!r}]\n"
             f"runpy.run_module('{argv[0]}', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=_env(),
                          timeout=120)
    assert proc.returncode in (0, 2), proc.stderr
    if argv[1] == "data.num_frame=3":
        assert "unknown config key 'data.num_frame'" in proc.stderr
    elif argv[1] == "solver.optimizing_method=adam":
        assert "config key 'solver.optimizing_method': expected one of adamw, sgd" in proc.stderr
    else:
        assert proc.stdout.startswith("usage:")
    imported = set(json.loads(proc.stderr.strip().splitlines()[-1]))
    assert imported <= allowed, f"{' '.join(argv)} imported {sorted(imported - allowed)}"
