"""User-facing errors: raised for bad input, turned into one line and a non-zero exit by the CLIs."""

from __future__ import annotations

import functools
import logging
import re
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


class UserError(Exception):
    """A mistake the user can fix (bad file, line, config key or value). The message says what and where."""


class ConfigError(UserError):
    """A wrong config key or value; the message names the key."""


def one_line(error: BaseException) -> str:
    """The message of a UserError; one raised in a DataLoader worker arrives wrapped in the worker's traceback
    ("Caught UserError in DataLoader worker process 0. Original Traceback ..."): keep only its own message."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
    match = re.match(r"^[\w.]+(?:Error|Exception): (.*)$", last)
    return match.group(1) if match else last


def cli_errors(fn: F) -> F:
    """Decorator for CLI entry points: a UserError becomes `error: <message>` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            logging.getLogger("mvit_video").debug("user error", exc_info=True)
            print(f"error: {one_line(e)}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
