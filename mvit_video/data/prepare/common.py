"""What the prepare commands share: the training command they print at the end (it must run as printed)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["train_command"]


def train_command(group: str, out_dir: Path, prefix: Optional[Path], num_classes: int, group_classes: int,
                  separator: str = " ", extra: Sequence[str] = ()) -> str:
    """`python -m mvit_video.train data=<group> ...` for lists written to `out_dir` (paths relative to `prefix`,
    None for absolute paths), shell-quoted. The data group (not `data.dataset=`) so the dataset's protocol comes
    with it; `model.num_classes` only where the lists' class count differs from the group's."""
    words = ["python", "-m", "mvit_video.train", f"data={group}", f"data.path_to_data_dir={out_dir.resolve()}"]
    if prefix is not None:
        words.append(f"data.path_prefix={prefix.resolve()}")
    if separator != " ":
        words.append(f"data.path_label_separator={separator}")
    if num_classes != group_classes:
        words.append(f"model.num_classes={num_classes}")
    return shlex.join([*words, *extra])
