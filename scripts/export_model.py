#!/usr/bin/env python
"""Export a trained network (torch.export, TorchScript, ONNX) and check it against eager.

Deprecated location, kept for one release with the same command line: the command is now `mvit-export`
(or `python -m mvit_video.export_model`); this wrapper runs it.
"""

import sys

from mvit_video.export_model import main

if __name__ == "__main__":
    from mvit_video.utils.deprecation import script_moved

    script_moved("export_model.py", "mvit-export")
    sys.exit(main())
