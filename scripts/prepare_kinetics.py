#!/usr/bin/env python
"""Kinetics-400/600/700 official annotation CSVs + a folder of downloaded videos -> PySlowFast list files.

    python scripts/prepare_kinetics.py --annotations k400/annotations --videos k400/videos --out data/k400

The command line of mvit_video.data.prepare.kinetics (its docstring and --help say what it writes).
"""

import sys

from mvit_video.data.prepare.kinetics import main

if __name__ == "__main__":
    sys.exit(main())
