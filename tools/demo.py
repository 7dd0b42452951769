"""The main job (train resnet20 on the embedded digits, then export it): `kres demo`, run
from a checkout (`bash tools/run.sh demo` runs this).

    python tools/demo.py --seed 1
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kres.cli import demo  # noqa: E402

if __name__ == "__main__":
    sys.exit(demo.main(prog="tools/demo.py"))
