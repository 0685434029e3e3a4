"""`--help` of the argparse commands: a usage line, then the description and its examples, under the name the
user typed (`mvit-infer`, `python -m mvit_video.infer` or the old `python scripts/infer.py`)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Any


def command_name(module: str) -> str:
    """How this command was run, for its usage line: the entry point (mvit-infer), a scripts/ wrapper, or -m."""
    argv0 = sys.argv[0] if sys.argv else ""
    base = os.path.basename(argv0)
    if base.startswith("mvit-"):
        return base
    if os.path.basename(os.path.dirname(argv0)) == "scripts":
        return f"python scripts/{base}"
    return f"python -m mvit_video.{module}"


def parser_kwargs(module: str, description: str, examples: str) -> dict[str, Any]:
    """ArgumentParser arguments: prog as typed, and a description that is `description` then `examples` (command
    lines, kept as written) right under the usage line."""
    lines = textwrap.dedent(examples).strip("\n")
    return {"prog": command_name(module), "formatter_class": argparse.RawDescriptionHelpFormatter,
            "description": f"{description.strip()}\n\nexamples:\n{textwrap.indent(lines, '  ')}"}


def from_docstring(module: str, doc: str) -> dict[str, Any]:
    """parser_kwargs from a module docstring whose first paragraph is the description and second its examples."""
    paragraphs = doc.split("\n\n")
    return parser_kwargs(module, paragraphs[0], paragraphs[1] if len(paragraphs) > 1 else "")
