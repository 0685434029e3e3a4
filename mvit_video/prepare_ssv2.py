"""`mvit-prepare-ssv2` / `python -m mvit_video.prepare_ssv2`:
Something-Something-v2 json annotations + webm videos -> list files.

The logic and the command line live in mvit_video.data.prepare.ssv2 (its --help says what it writes).
"""

from __future__ import annotations

import sys

from mvit_video.data.prepare.ssv2 import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
