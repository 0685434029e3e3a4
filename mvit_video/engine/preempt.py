"""Stop signals of a training run: preemption (SLURM, submitit), SIGTERM and Ctrl-C.

The first stop signal sets a flag; the loop finishes its step, saves `checkpoint_preempt.pyth`, then `exit()`
hands over to submitit's requeue, asks SLURM to requeue, or exits 128 + signal. Two things cannot wait for the loop:

- a step that runs for minutes (a huge crop): Python runs signal handlers only between bytecodes of the main thread,
  so a long C++ op would hold them off indefinitely. A watcher thread is woken by the C-level signal handler itself
  (`signal.set_wakeup_fd`) and, when the run has not stopped `grace_s` seconds after the signal, ends the process
  (workers first) without a checkpoint -- the last one written is kept;
- a second stop signal: the process ends at once, with the same code (130 for Ctrl-C).

Which signal each launcher sends: SLURM via `scripts/slurm/train.sbatch` SIGUSR1 (`#SBATCH --signal=USR1@120`);
submitit (hydra/launcher=mvit_slurm or submitit_*) its `SUBMITIT_PREEMPT_SIGNAL`, USR2 by default; torchrun and
`scancel` SIGTERM. All of them are caught here; SIGTERM and SIGINT save and exit without a requeue.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from mvit_video.data.loader import STOP_SIGNALS, kill_all_workers
from mvit_video.utils import distributed as du

logger = logging.getLogger(__name__)


def submitit_signal() -> int | None:
    """The signal submitit arms SLURM with for preemption (`SUBMITIT_PREEMPT_SIGNAL`, USR2 by default), read as
    submitit reads it (a class attribute fixed when submitit is imported); None for an unknown name."""
    sub = sys.modules.get("submitit")
    name = getattr(getattr(sub, "JobEnvironment", None), "USR_SIG", None) if sub is not None else None
    name = name or os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, "SIG" + str(name).upper().removeprefix("SIG"), None)


def requeue_signals() -> set[int]:
    """The signals after which a run under SLURM asks to be requeued: train.sbatch's SIGUSR1 and submitit's
    preemption signal (SIGUSR2 unless configured). Not SIGINT (a person) nor SIGTERM (scancel)."""
    extra = submitit_signal()
    signals = {int(signal.SIGUSR1), int(signal.SIGUSR2), *([int(extra)] if extra is not None else [])}
    return signals - {int(signal.SIGINT)}


def exit_code(signum: int) -> int:
    """The status a shell reports for a process ended by `signum`: 128 + signal (130 for Ctrl-C, 143 SIGTERM)."""
    return 128 + int(signum)


# Forked children (data-loader workers) inherit the wakeup fd: a signal there would write into our pipe and count
# as a second signal here. The stop signals are blocked across the fork, so one sent to the whole process group
# (as SLURM does) while a worker starts stays pending in the child until it has dropped the wakeup fd. Registered
# once per process, by the first `install()` (not at import); it acts only while a handler is installed.
_INSTALLED: list["PreemptionHandler"] = []
_BLOCKED: list[set[signal.Signals]] = []  # the masks before `_before_fork`, restored by the two after-fork hooks
_fork_hooks_registered = False


def _before_fork() -> None:
    if _INSTALLED:
        _BLOCKED.append(signal.pthread_sigmask(signal.SIG_BLOCK, _INSTALLED[-1].signals()))


def _after_fork_in_parent() -> None:
    if _BLOCKED:
        signal.pthread_sigmask(signal.SIG_SETMASK, _BLOCKED.pop())


def _after_fork_in_child() -> None:
    if _INSTALLED:
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError):
            pass
        _INSTALLED.clear()
    if _BLOCKED:
        # The mask from before the fork, not "unblocked": pending stop signals reach the child's own handlers now,
        # not our pipe -- unless the forking code blocked them itself (the loader, while its workers start).
        signal.pthread_sigmask(signal.SIG_SETMASK, _BLOCKED.pop())


def _register_fork_hooks() -> None:
    """Once per process (os.register_at_fork cannot be undone): block the stop signals across every fork."""
    global _fork_hooks_registered
    if not _fork_hooks_registered:
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                            after_in_child=_after_fork_in_child)
        _fork_hooks_registered = True


class PreemptionHandler:
    """Stop signals set a flag; the loop finishes the step, saves, then calls `exit()`. A watcher thread bounds the
    wait (`grace_s`, None: unbounded) and ends the process at once on a second stop signal.

    A flag, not Python's KeyboardInterrupt, because that one is swallowed when it lands in a finalizer or an at-fork
    hook (e.g. while a data-loader worker starts), and a hard exit from the watcher, because a KeyboardInterrupt
    raised in the main thread waits for the current op and ends in a traceback."""

    SIGNALS = STOP_SIGNALS

    def __init__(self, grace_s: float | None = 90.0) -> None:
        self.signum: int | None = None
        self.grace_s = grace_s
        self.signalled_at: float | None = None
        self._count = 0
        self._count_lock = threading.Lock()
        self._previous: dict[int, Any] = {}
        self._at_hard_exit: list[Callable[[], None]] = []
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup_fd = -1
        self._watcher: threading.Thread | None = None
        self._stopping = False
        self._exiting = False
        # False outside the training loop (nothing to save there): the first signal exits at once
        self.checkpointable = True

    # ------------------------------------------------------------------ install / restore

    def signals(self) -> tuple[int, ...]:
        """The signals caught: STOP_SIGNALS plus submitit's configured preemption signal."""
        extra = submitit_signal()
        return self.SIGNALS + ((extra,) if extra is not None and extra not in self.SIGNALS else ())

    def install(self) -> "PreemptionHandler":
        """Install the handlers and start the watcher (main thread only; elsewhere signals are left alone)."""
        for sig in self.signals():
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some launchers): leave signals alone
                return self
        r, w = os.pipe()
        os.set_blocking(w, False)  # set_wakeup_fd requires it: the C handler must never block
        try:
            self._old_wakeup_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError) as e:  # e.g. an event loop owns it: flag-only handling
            logger.debug("no signal watcher: %s", e)
            os.close(r)
            os.close(w)
            return self
        _register_fork_hooks()  # before a worker can fork with the wakeup fd set
        self._pipe = (r, w)
        self._watcher = threading.Thread(target=self._watch, name="stop-signal-watcher", daemon=True)
        self._watcher.start()
        _INSTALLED.append(self)
        return self

    def at_hard_exit(self, fn: Callable[[], None]) -> None:
        """Run `fn` (e.g. release the run lock) before a hard exit; it must be quick and thread-safe."""
        self._at_hard_exit.append(fn)

    def restore(self) -> None:
        """Put back the handlers that were there before and stop the watcher."""
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()
        if self._pipe is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._stopping = True
            try:
                os.write(self._pipe[1], b"\0")  # byte 0 (no signal has number 0): wakes the watcher to stop
            except OSError:
                pass
            if self._watcher is not None:
                self._watcher.join(timeout=5)
            for fd in self._pipe:
                os.close(fd)
            self._pipe, self._watcher = None, None
            if self in _INSTALLED:
                _INSTALLED.remove(self)

    # ------------------------------------------------------------------ signals

    def _handle(self, signum: int, frame: Any) -> None:
        """The Python-level handler (main thread, between bytecodes). With a watcher, it only sets the flag: the
        watcher counts signals and ends the process. Without one (no wakeup fd), it counts itself. Outside the
        training loop (`checkpointable` false: building the run, the final test) there is nothing to save: it
        requeues or exits at once, through SystemExit so that `finally` blocks release the lock and the workers."""
        first = self.signum is None
        if self._pipe is None:
            self._note(signum)
        elif first:
            self.signum = signum
        if first and not self.checkpointable and not self._exiting:
            self.exit()
        # Otherwise only a flag: logging or saving inside a signal handler could deadlock on locks the step holds.

    def _note(self, signum: int) -> None:
        """Count one stop signal: the first arms the grace timer, the second ends the process."""
        with self._count_lock:
            self._count += 1
            first = self._count == 1
            if first:
                self.signalled_at = time.monotonic()
                if self.signum is None:
                    self.signum = signum
        if not first:
            self.hard_exit(signum, "second stop signal: stopping at once, without a checkpoint")

    def _watch(self) -> None:
        """Watcher thread: reads signal numbers written by the C-level handler, even while the main thread is stuck
        in a long op, and enforces the grace period."""
        assert self._pipe is not None
        r = self._pipe[0]
        caught = set(self._previous)
        while not self._stopping:
            timeout = None
            if self.signalled_at is not None and self.grace_s is not None:
                timeout = max(0.0, self.signalled_at + self.grace_s - time.monotonic())
            try:
                ready, _, _ = select.select([r], [], [], timeout)
                data = os.read(r, 64) if ready else b""
            except OSError:
                return
            if self._stopping:
                return
            for signum in data:
                if signum in caught:
                    self._note(signum)
            if not ready and self.signalled_at is not None and self.grace_s is not None:
                signum = self.signum or signal.SIGTERM
                self.hard_exit(signum, f"the run did not stop within train.stop_grace_s={self.grace_s:g} s of the "
                                       f"signal (a long step); stopping without a checkpoint, the last one is kept",
                               requeue=True)

    def hard_exit(self, signum: int, why: str, *, requeue: bool = False) -> None:
        """End the process now from any thread: one line on stderr, callbacks (lock), workers killed, os._exit.
        With `requeue` (grace expired on a preemption signal) the job is still requeued (submitit or SLURM)."""
        try:
            os.write(2, f"error: signal {signum}: {why}\n".encode())
        except OSError:
            pass
        code = exit_code(signum)
        if requeue and signum != signal.SIGINT:
            try:
                if self._requeue(signum):
                    code = 0
            except SystemExit as e:  # submitit's handler requeued and exits with its own status: keep it
                code = e.code if isinstance(e.code, int) else 1
            except BaseException as e:  # noqa: BLE001 -- best effort: go on to the exit
                os.write(2, f"requeue failed: {e}\n".encode())
        for fn in self._at_hard_exit:
            try:
                fn()
            except Exception:  # noqa: BLE001 -- best effort on the way out
                pass
        kill_all_workers()  # the kernel would end them with us (PR_SET_PDEATHSIG); this also reaps them first
        os._exit(code & 0xFF)

    # ------------------------------------------------------------------ after the checkpoint

    def exit(self) -> None:
        """Leave after the preemption checkpoint: hand over to submitit, or requeue under SLURM, or exit 128+sig.

        Exit status: 0 after a successful `scontrol requeue` (SLURM restarts the job, which resumes); submitit's
        own after its requeue; otherwise 128 + signal number (143 for SIGTERM, 138 SIGUSR1, 140 SIGUSR2). The
        handlers stay installed until `restore()`: a second signal during the clean-up still ends the run at once."""
        self._exiting = True
        signum = self.signum or signal.SIGTERM
        if signum == signal.SIGINT:  # a person stopping the run: no requeue
            raise SystemExit(exit_code(signum))
        if self._requeue(signum):
            raise SystemExit(0)
        raise SystemExit(exit_code(signum))

    def _requeue(self, signum: int) -> bool:
        """Requeue the job: submitit's handler (which requeues, then exits itself), else `scontrol requeue` under
        SLURM on rank 0 for a preemption signal (SIGUSR1, SIGUSR2, submitit's). True when SLURM requeued it.

        SIGTERM is not one: under SLURM it is `scancel` (or the end of a time limit that was given no --signal), and a
        cancelled job must stay cancelled -- submitit's convention too (its SIGTERM handler only logs)."""
        previous = self._previous.get(signum)
        if callable(previous) and previous not in (signal.default_int_handler,):
            # submitit installs its own handler: it pickles the job and requeues it (then exits itself). Its SIGTERM
            # handler only logs and returns.
            previous(signum, None)
        if signum not in requeue_signals():
            return False
        if "SLURM_JOB_ID" in os.environ and du.is_main() and _scontrol_requeue(os.environ["SLURM_JOB_ID"]):
            logger.info("requeued SLURM job %s; it resumes from the preemption checkpoint", os.environ["SLURM_JOB_ID"])
            return True
        return False


def _scontrol_requeue(job_id: str) -> bool:
    """Ask SLURM to requeue this job (needs `#SBATCH --requeue`); True on success."""
    try:
        subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True, timeout=60)
        return True
    except (OSError, subprocess.SubprocessError) as e:
        logger.warning("scontrol requeue %s failed: %s", job_id, e)
        return False
