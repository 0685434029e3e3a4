#!/usr/bin/env python
"""Dataset doctor: decode every video of a Kinetics-format list file and report what the loader would trip on.

    python scripts/check_dataset.py data/k400/train.csv --prefix /datasets/k400/videos --workers 16 \
        --write-clean data/k400/train_clean.csv

The command line of mvit_video.data.prepare.check (its docstring and --help say what it prints and writes).
"""

import sys

from mvit_video.data.prepare.check import main

if __name__ == "__main__":
    sys.exit(main())
