#!/usr/bin/env python
"""Something-Something-v2 official json annotations + `{id}.webm` videos -> Kinetics-format list files.

    python scripts/prepare_ssv2.py --annotations ssv2/labels --videos ssv2/20bn-something-something-v2 --out data/ssv2

The command line of mvit_video.data.prepare.ssv2 (its docstring and --help say what it writes).
"""

import sys

from mvit_video.data.prepare.ssv2 import main

if __name__ == "__main__":
    sys.exit(main())
