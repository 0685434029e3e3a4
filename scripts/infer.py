#!/usr/bin/env python
"""Classify videos with a trained checkpoint.

Deprecated location, kept for one release with the same command line: the command is now `mvit-infer`
(or `python -m mvit_video.infer`); this wrapper runs it.
"""

import sys

from mvit_video.infer import main

if __name__ == "__main__":
    from mvit_video.utils.deprecation import script_moved

    script_moved("infer.py", "mvit-infer")
    sys.exit(main())
