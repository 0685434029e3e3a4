"""`mvit-prepare-kinetics` / `python -m mvit_video.prepare_kinetics`:
Kinetics official annotation CSVs + downloaded videos -> PySlowFast list files.

The logic and the command line live in mvit_video.data.prepare.kinetics (its --help says what it writes).
"""

from __future__ import annotations

import sys

from mvit_video.data.prepare.kinetics import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
