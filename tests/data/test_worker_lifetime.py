"""The data-loader workers live as long as the `LoaderWorkers` block that started them: leaving it by an exception
or a signal ends them (real worker processes decoding real videos), and nothing is registered at import."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny import kinetics_cfg

import mvit_video.data.loader as loader_module
from mvit_video.data import build_dataset, build_loader
from mvit_video.data.loader import LoaderWorkers, stop_workers

PACKAGE = Path(__file__).resolve().parents[2] / "mvit_video"
TESTS = Path(__file__).resolve().parents[1]


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid`, zombies included (a worker not yet reaped still counts), read from /proc."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError):
            continue  # ended while we looked
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _train_loader(list_dir: Path):
    cfg = kinetics_cfg(list_dir, **{"data_loader.num_workers": 2, "train.batch_size": 1})
    assert cfg.data_loader.persistent_workers  # the training's loader: its iterator (and workers) outlive a loop
    return build_loader(build_dataset(cfg, "train"), "train", cfg.data_loader, batch_size=1, seed=cfg.seed)


@pytest.mark.slow
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # e.g. an error in torch's __del__
def test_leaving_by_an_exception_ends_the_workers(kinetics_list_dir) -> None:
    before = _children(os.getpid())
    loader = _train_loader(kinetics_list_dir)
    with pytest.raises(KeyError, match="injected"):
        with LoaderWorkers() as owner:
            it = iter(loader)
            assert next(it)["video"].ndim == 5  # a real batch, decoded by a worker
            workers = _children(os.getpid()) - before
            assert len(workers) == 2 and {p.pid for p in owner.processes} == workers
            raise KeyError("injected")
    # The loader and its iterator are still referenced (as an exception's traceback would keep them); the workers
    # are not: ended and reaped when the block was left.
    assert it is not None and not workers & _children(os.getpid())
    with LoaderWorkers(), pytest.raises(RuntimeError, match="build a new loader"):
        iter(loader)  # its persistent workers are gone: said at once, not after torch's 5 s timeout
    # Another block starts workers of its own and iterates a whole epoch; torch's own shutdown of the first
    # iterator (dropped here) finds its workers gone and raises nothing.
    del it, loader
    with LoaderWorkers() as owner:
        second = _train_loader(kinetics_list_dir)
        assert len(list(second)) == len(second) > 0
        assert len(owner.processes) == 2
    assert _children(os.getpid()) == before


_SIGNALLED = """
import sys, time
from tiny import kinetics_cfg
from mvit_video.data import build_dataset, build_loader
from mvit_video.data.loader import LoaderWorkers

cfg = kinetics_cfg(sys.argv[1], **{"data_loader.num_workers": 2, "train.batch_size": 1})
loader = build_loader(build_dataset(cfg, "train"), "train", cfg.data_loader, batch_size=1, seed=cfg.seed)
try:
    with LoaderWorkers() as owner:
        while True:  # epochs until the signal comes
            for batch in loader:
                print("workers", *sorted(p.pid for p in owner.processes), flush=True)
                time.sleep(0.05)
except KeyboardInterrupt:
    print("left", flush=True)
    time.sleep(120)  # alive, holding the loader and its iterator: only the block can have ended the workers
"""


@pytest.mark.slow
def test_leaving_by_a_signal_ends_the_workers(kinetics_list_dir, tmp_path: Path) -> None:
    """Ctrl-C reaches the whole foreground group: the workers ignore it, the main process leaves the block by
    KeyboardInterrupt wherever it was (waiting for a batch, or stepping), and the block ends the workers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), str(TESTS)])}
    proc = subprocess.Popen([sys.executable, "-c", _SIGNALLED, str(kinetics_list_dir)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = ""
        while not line.startswith("workers"):
            line = proc.stdout.readline()
            assert line, "the script ended before its workers started"
        workers = {int(p) for p in line.split()[1:]}
        assert len(workers) == 2 and workers <= _children(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: the main process and its workers
        deadline = time.time() + 60
        while line.strip() != "left":
            line = proc.stdout.readline()
            assert line and time.time() < deadline, "the script did not leave the block after SIGINT"
        assert proc.poll() is None  # still running: the workers are not gone because their parent died
        assert not workers & _children(proc.pid)  # ended and reaped
        assert not [w for w in workers if Path(f"/proc/{w}").exists()]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_private_data_loader_internals_are_used_in_one_function_only() -> None:
    """torch's DataLoader internals change between the versions pyproject.toml allows (2.4 to 2.14.1): the package
    touches them only in `loader._shutdown_pinned`, which checks the version and has a fallback."""
    private = re.compile(r"_get_iterator|_shutdown_workers|_worker_loop|_MultiProcessingDataLoaderIter|"
                         r"torch\.utils\.data\._utils|\._iterator\b|_worker_pids")
    hits = []
    for path in PACKAGE.rglob("*.py"):
        function = None
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith(("def ", "class ")):
                function = line.split()[1].split("(")[0]
            if private.search(line):
                hits.append((path.name, function))
    assert set(hits) == {("loader.py", "_shutdown_pinned")}


@pytest.mark.slow
def test_a_live_iterator_is_shut_down_by_torch_on_a_checked_version_else_by_us(kinetics_list_dir,
                                                                               monkeypatch) -> None:
    """`_shutdown_pinned` (used for CUDA pin-memory iterators) on a real multi-worker iterator: torch's shutdown
    ends the workers with status 0; on an unchecked torch version it does nothing and the block ends them."""
    for version, done in (("2.14.1+cu130", True), ("2.15.0", False)):
        monkeypatch.setattr(torch, "__version__", version)
        with LoaderWorkers() as owner:
            it = iter(_train_loader(kinetics_list_dir))
            next(it)
            workers = owner.processes
            assert len(workers) == 2 and loader_module._shutdown_pinned(it) is done
            if done:
                assert all(p.exitcode == 0 for p in workers)  # joined by torch, a clean exit
        assert all(p.exitcode == 0 for p in workers)  # else: released by the block


_IMPORT_ONLY = """
import atexit, os
seen, register, at_fork = [], atexit.register, os.register_at_fork

def recording_register(fn, *args, **kwargs):
    seen.append(str(getattr(fn, "__module__", None)))
    return register(fn, *args, **kwargs)

def recording_at_fork(**hooks):
    seen.extend(str(getattr(f, "__module__", None)) for f in hooks.values())
    return at_fork(**hooks)

atexit.register, os.register_at_fork = recording_register, recording_at_fork
import mvit_video.data.loader, mvit_video.engine.preempt, mvit_video.engine.trainer
print(sorted(m for m in seen if m.startswith("mvit_video")))
"""


@pytest.mark.slow
def test_importing_registers_no_exit_or_fork_hooks() -> None:
    """Exit and fork hooks of ours are registered by what needs them (the first worker outside a block, the first
    installed stop-signal handler), never by an import."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    r = subprocess.run([sys.executable, "-c", _IMPORT_ONLY], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


def test_stop_workers_still_works_and_says_what_replaces_it() -> None:
    with pytest.warns(DeprecationWarning, match="LoaderWorkers"):
        stop_workers()


_PINNED = """
import sys, torch
from tiny import kinetics_cfg
from mvit_video.data import build_dataset, build_loader
from mvit_video.data.loader import LoaderWorkers

cfg = kinetics_cfg(sys.argv[1], **{"data_loader.num_workers": 2, "train.batch_size": 1})
assert cfg.data_loader.pin_memory and cfg.data_loader.persistent_workers
loader = build_loader(build_dataset(cfg, "train"), "train", cfg.data_loader, batch_size=1, seed=cfg.seed,
                      device="cuda")
try:
    with LoaderWorkers():
        it = iter(loader)
        next(it)
        raise KeyError("injected")
except KeyError:
    print("left", flush=True)
"""


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (a pin-memory thread)")
def test_leaving_with_a_pinned_loader_then_exiting_does_not_hang(kinetics_list_dir, tmp_path: Path) -> None:
    """CUDA: torch's pin-memory thread is stopped before the workers (`_shutdown_pinned`), and the process, which
    still holds the iterator, exits without waiting on it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), str(TESTS)])}
    r = subprocess.run([sys.executable, "-c", _PINNED, str(kinetics_list_dir)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "left", r.stderr[-3000:]
