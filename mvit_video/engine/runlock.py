"""One run per output_dir (lock_output_dir): a lock file naming its holder (host, pid, SLURM job), kept fresh by a heartbeat.

Works on shared filesystems (NFS): it relies only on exclusive create, rename and file mtimes, no flock. A lock is
stale, and is taken over, when its holder is gone: same host and the pid is dead, the same SLURM job id (a requeued
job), or no heartbeat for `stale_after_s` seconds (a holder on another host that died).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from mvit_video.utils import distributed as du
from mvit_video.utils.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

LOCK_NAME = ".run.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """`RunLock(output_dir).acquire()` ... `release()`; acquire raises UserError naming a live holder."""

    def __init__(self, output_dir: str | os.PathLike, heartbeat_s: float = 30.0, stale_after_s: float = 300.0) -> None:
        self.path = Path(output_dir) / LOCK_NAME
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.token = uuid.uuid4().hex
        self.info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(),
                                     "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "started": time.time(),
                                     "token": self.token}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # torn or foreign content: judged by its mtime only

    def _stale_reason(self, holder: dict[str, Any]) -> str | None:
        """Why the lock held by `holder` is stale, or None when its holder may be alive."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "gone"
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s"
        if holder.get("host") == self.info["host"] and isinstance(holder.get("pid"), int):
            if not _pid_alive(holder["pid"]):
                return f"pid {holder['pid']} is no longer running"
        job = self.info["slurm_job_id"]
        if job and holder.get("slurm_job_id") == job:
            return f"SLURM job {job} was requeued"
        return None

    def _write_own(self) -> None:
        tmp = self.path.with_name(f"{LOCK_NAME}.{self.token}.tmp")
        tmp.write_text(json.dumps(self.info), encoding="utf-8")
        os.replace(tmp, self.path)

    def acquire(self) -> "RunLock":
        """Take the lock (creating output_dir), or raise UserError naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    continue  # released meanwhile: try again
                reason = self._stale_reason(holder)
                if reason is None:
                    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
                    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
                    raise UserError(
                        f"output_dir {self.path.parent} is in use by another run (pid {holder.get('pid')} on host "
                        f"{holder.get('host')}{job}, since {since}); wait for it, stop it, or pick another "
                        f"output_dir (if that run is gone, delete {self.path})")
                logger.warning("taking over the stale lock %s of pid %s on %s: %s", self.path, holder.get("pid"),
                               holder.get("host"), reason)
                self._write_own()
                time.sleep(0.05)  # two takers raced: the last rename wins, the other one sees it below
                if (self._read() or {}).get("token") != self.token:
                    continue
                break
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(self.info))
            break
        else:
            raise UserError(f"could not take the lock {self.path} (another run keeps taking it)")
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError as e:  # e.g. NFS hiccup: the next beat tries again
                logger.warning("lock heartbeat on %s failed: %s", self.path, e)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if (self._read() or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)


def live_holder(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The holder (host, pid, SLURM job) of output_dir's run lock while that run is alive, else None. For readers
    of a run folder (evaluate), which never take the lock: they use a locked folder read-only, writing only
    files of their own."""
    probe = RunLock(output_dir)
    holder = probe._read()
    if holder is None:
        return None
    return None if probe._stale_reason(holder) is not None else holder


def describe_holder(holder: dict[str, Any]) -> str:
    """'pid N on host H[, SLURM job J]'."""
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{job}"


def lock_output_dir(output_dir: Path) -> RunLock | None:
    """Rank 0 checks output_dir is a writable directory and takes its run lock; every rank fails if it could not."""
    lock, error = None, None
    if du.is_main():
        try:
            lock = _take_lock(output_dir)
        except UserError as e:
            error = e
    first = du.all_gather_object(str(error) if error is not None else None)[0]
    if error is not None:
        raise error
    if first is not None:
        raise UserError(first)
    return lock


def _take_lock(output_dir: Path) -> RunLock:
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"config key 'output_dir': {output_dir} is a file, not a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        return RunLock(output_dir).acquire()
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"config key 'output_dir': {output_dir} is below a file, not a directory") from None
    except PermissionError:
        raise ConfigError(f"config key 'output_dir': {output_dir} is not writable") from None
    except OSError as e:
        raise ConfigError(f"config key 'output_dir': cannot write to {output_dir} ({e.strerror})") from None
