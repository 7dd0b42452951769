"""Measure kres against what users would pick instead: `kres benchmark`, run from a checkout.

    python tools/benchmark.py --suite quick --json bench.json
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kres.cli import benchmark  # noqa: E402

if __name__ == "__main__":
    sys.exit(benchmark.main(prog="tools/benchmark.py"))
