"""``python -m kres``: the ``kres`` command (kres.cli)."""

import sys

from kres.cli import main

sys.exit(main())
