"""``kres list [PATTERN]``: the names of the registered models, one a line, like
``kres.list_models(pattern)``.

    kres list                # every model
    kres list 'resnet5*'     # resnet50, resnet50d, resnet56
"""

from __future__ import annotations

import argparse
import sys

PROG = "kres list"


def main(argv=None, prog=PROG) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("pattern", nargs="?", default="*",
                        help="fnmatch pattern of model names (default: all)")
    args = parser.parse_args(argv)
    from kres import native

    native.import_tensorflow()
    import kres

    names = kres.list_models(args.pattern)
    if not names:
        print(f"{prog}: no model name matches {args.pattern!r}", file=sys.stderr)
        return 1
    print("\n".join(names))
    return 0
