"""User-facing errors: raised for bad input, turned into one line and a non-zero exit by the CLIs."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


class UserError(Exception):
    """A mistake the user can fix (bad file, line, config key or value). The message says what and where."""


class ConfigError(UserError):
    """A wrong config key or value; the message names the key."""


def cli_errors(fn: F) -> F:
    """Decorator for CLI entry points: a UserError becomes `error: <message>` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            logging.getLogger("mvit_video").debug("user error", exc_info=True)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
