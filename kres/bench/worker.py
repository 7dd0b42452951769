"""``python -m kres.bench.worker MODULE.FUNCTION KWARGS.json OUT.json``: one measurement in
this process (whose Keras backend the caller chose), its result written as JSON."""

import importlib
import json
import sys


def main(argv=None):
    function, kwargs_path, out_path = (argv or sys.argv[1:])[:3]
    module, _, name = function.rpartition(".")
    with open(kwargs_path) as f:
        kwargs = json.load(f)
    result = getattr(importlib.import_module(f"kres.bench.{module}"), name)(**kwargs)
    from kres.files import atomic_write_text

    atomic_write_text(out_path, json.dumps(result))


if __name__ == "__main__":
    main()
