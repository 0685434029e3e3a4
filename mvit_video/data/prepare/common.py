"""What the prepare commands share: the training command they print at the end (it must run as printed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["train_command", "hydra_value"]

# what Hydra's override grammar reads as a plain string; anything else (a comma: a sweep, brackets: a list, a
# space, quotes, '=') is quoted
_PLAIN = re.compile(r"[A-Za-z0-9_/.\-+@%:]+")


def hydra_value(value: str) -> str:
    """`value` as a Hydra override value: as it is when plain, else single-quoted. Inside the quotes Hydra reads a
    backslash literally except before a quote (or at the end), and resolves `${...}`: those are escaped."""
    if _PLAIN.fullmatch(value):
        return value
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)  # backslashes before a quote double
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body).replace("${", "\\${")
    return f"'{body}'"


def train_command(group: str, out_dir: Path, prefix: Optional[Path], num_classes: int, group_classes: int,
                  separator: str = " ", extra: Sequence[str] = ()) -> str:
    """`python -m mvit_video.train data=<group> ...` for lists written to `out_dir` (paths relative to `prefix`,
    None for absolute paths), shell-quoted. The data group (not `data.dataset=`) so the dataset's protocol comes
    with it; `model.num_classes` only where the lists' class count differs from the group's."""
    words = ["python", "-m", "mvit_video.train", f"data={group}",
             f"data.path_to_data_dir={hydra_value(str(out_dir.resolve()))}"]
    if prefix is not None:
        words.append(f"data.path_prefix={hydra_value(str(prefix.resolve()))}")
    if separator != " ":
        words.append(f"data.path_label_separator={hydra_value(separator)}")
    if num_classes != group_classes:
        words.append(f"model.num_classes={num_classes}")
    return shlex.join([*words, *extra])
