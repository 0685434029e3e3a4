#!/usr/bin/env python
"""Convert a PySlowFast or torchvision MViTv2 checkpoint into an mvit_video checkpoint.

Deprecated location, kept for one release with the same command line: the command is now `mvit-convert`
(or `python -m mvit_video.convert_checkpoint`); this wrapper runs it.
"""

import sys

from mvit_video.convert_checkpoint import main

if __name__ == "__main__":
    from mvit_video.utils.deprecation import script_moved

    script_moved("convert_checkpoint.py", "mvit-convert")
    sys.exit(main())
