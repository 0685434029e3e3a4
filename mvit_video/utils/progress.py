"""Progress for long loops: a tqdm bar when a person watches a terminal, else a log line every N steps with the
rate and an ETA; and a logging handler that writes through tqdm so that log records do not break a bar."""

from __future__ import annotations

import datetime
import logging
import sys
import time


def interactive() -> bool:
    """tqdm bars only when a person watches (stderr is a terminal)."""
    return sys.stderr.isatty()


def format_eta(seconds: float) -> str:
    """Seconds as H:MM:SS (rounded up to whole seconds)."""
    return str(datetime.timedelta(seconds=int(max(0.0, seconds) + 0.999)))


class TqdmLoggingHandler(logging.StreamHandler):
    """A stderr handler that writes through `tqdm.write`: a record printed while a bar is shown goes above it
    instead of splitting it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # noqa: BLE001 -- logging's own policy: a failing handler reports, never raises
            self.handleError(record)


class Progress:
    """Count items (videos) of a loop of `total` items: a tqdm bar when `bar` (default: stderr is a terminal), else
    every `log_every` updates, or after `log_every_s` seconds without a line, a line
    `<desc>: done/total <unit>s, R <unit>s/s, ETA H:MM:SS` on `logger`."""

    def __init__(self, total: int | None, desc: str, logger: logging.Logger, *, bar: bool | None = None,
                 log_every: int = 10, unit: str = "video", enabled: bool = True, log_every_s: float = 30.0) -> None:
        self.total, self.desc, self.logger, self.unit = total, desc, logger, unit
        self.log_every, self.enabled = max(1, int(log_every)), enabled
        self.log_every_s = float(log_every_s)
        self.done, self.updates = 0, 0
        self.start = self._last_line = time.perf_counter()
        self._bar = None
        if enabled and (interactive() if bar is None else bar):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False, file=sys.stderr)

    def rate(self) -> float:
        """Items per second so far."""
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def eta(self) -> float | None:
        """Seconds left at the rate so far (None without a total or before the first item)."""
        if self.total is None or self.done == 0:
            return None
        return (self.total - self.done) / max(self.rate(), 1e-9)

    def update(self, n: int) -> None:
        """`n` more items are done."""
        self.done += n
        self.updates += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
        elif (self.updates % self.log_every == 0 or time.perf_counter() - self._last_line >= self.log_every_s) and (
                self.total is None or self.done < self.total):
            self._last_line = time.perf_counter()
            eta = self.eta()
            self.logger.info("%s: %d/%s %ss, %.1f %ss/s, ETA %s", self.desc, self.done,
                             self.total if self.total is not None else "?", self.unit, self.rate(), self.unit,
                             format_eta(eta) if eta is not None else "?")

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
