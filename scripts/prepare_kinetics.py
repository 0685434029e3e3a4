#!/usr/bin/env python
"""Kinetics official annotation CSVs + downloaded videos -> PySlowFast list files.

Deprecated location, kept for one release with the same command line: the command is now `mvit-prepare-kinetics`
(or `python -m mvit_video.prepare_kinetics`); this wrapper runs it.
"""

import sys

from mvit_video.prepare_kinetics import main

if __name__ == "__main__":
    from mvit_video.utils.deprecation import script_moved

    script_moved("prepare_kinetics.py", "mvit-prepare-kinetics")
    sys.exit(main())
