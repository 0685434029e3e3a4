"""`mvit-check-dataset` / `python -m mvit_video.check_dataset`:
Dataset doctor: decode every video of a list file and report what the loader would trip on.

The logic and the command line live in mvit_video.data.prepare.check (its --help says what it writes).
"""

from __future__ import annotations

import sys

from mvit_video.data.prepare.check import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
