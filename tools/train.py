"""Train a kres model: `kres train`, run from a checkout.

    python tools/train.py --model resnet20 --data digits --epochs 30 --out runs/digits-resnet20
    python tools/train.py --out runs/digits-resnet20 --resume          # after a kill
    python tools/train.py --backend jax --distribute data-parallel ... # Colab TPU, multi-device
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kres.cli import train  # noqa: E402

if __name__ == "__main__":
    sys.exit(train.main(prog="tools/train.py"))
