"""Top-1 and top-5 of a checkpoint on a dataset split: `kres validate`, run from a checkout.

    python tools/validate.py resnet50 --weights a1_in1k --data tfds:imagenet2012 --split validation
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kres.cli import validate  # noqa: E402

if __name__ == "__main__":
    sys.exit(validate.main(prog="tools/validate.py"))
