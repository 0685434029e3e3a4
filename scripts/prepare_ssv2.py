#!/usr/bin/env python
"""Something-Something-v2 json annotations + webm videos -> list files.

Deprecated location, kept for one release with the same command line: the command is now `mvit-prepare-ssv2`
(or `python -m mvit_video.prepare_ssv2`); this wrapper runs it.
"""

import sys

from mvit_video.prepare_ssv2 import main

if __name__ == "__main__":
    from mvit_video.utils.deprecation import script_moved

    script_moved("prepare_ssv2.py", "mvit-prepare-ssv2")
    sys.exit(main())
