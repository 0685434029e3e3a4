#!/usr/bin/env python
"""Dataset doctor: decode every video of a list file and report what the loader would trip on.

Deprecated location, kept for one release with the same command line: the command is now `mvit-check-dataset`
(or `python -m mvit_video.check_dataset`); this wrapper runs it.
"""

import sys

from mvit_video.check_dataset import main

if __name__ == "__main__":
    from mvit_video.utils.deprecation import script_moved

    script_moved("check_dataset.py", "mvit-check-dataset")
    sys.exit(main())
