"""Text from files (class names, video paths) made safe to print on a terminal."""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: object) -> str:
    """`text` with every non-printable character (ANSI escapes, CR, other control and format characters) written
    as a Python escape (\\x1b, \\u200e): a class name from a file cannot clear the screen or rewrite a line.
    Letters of any script and spaces stay as they are."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
                   if ord(c) < 0x10000 else f"\\U{ord(c):08x}" for c in s)
