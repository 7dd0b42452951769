"""Quantise and export a kres model, verified: `kres export`, run from a checkout.

    python tools/export.py runs/digits-resnet20 --out exports/digits-resnet20
    python tools/export.py runs/digits-resnet20 --formats tflite --quantize int8 --io uint8
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kres.cli import export  # noqa: E402

if __name__ == "__main__":
    sys.exit(export.main(prog="tools/export.py"))
