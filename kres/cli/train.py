"""Train a kres model: a thin command line over kres.training.train.

    kres train --model resnet20 --data digits --epochs 30 --out runs/digits-resnet20
    kres train --out runs/digits-resnet20 --resume          # after a kill
    kres train --backend jax --distribute data-parallel ... # Colab TPU, multi-device

Every option is a field of kres.training.TrainConfig (its help text is the field's); every one
left out takes the per-family default.
"""

from __future__ import annotations

import argparse
import os
import sys

PROG = "kres train"


def parse_args(argv=None, prog=PROG):
    """The parsed command line. --backend must be known before Keras is imported, so it is
    parsed first, on its own."""
    known, _ = _backend_option().parse_known_args(argv)
    if known.backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != known.backend:
            sys.exit(f"{prog}: --backend must be chosen before keras is imported")
        os.environ["KERAS_BACKEND"] = known.backend
    from kres import native

    native.import_tensorflow()  # tf.data on every backend; its start-up lines filtered
    return parser(prog).parse_args(argv)


def parser(prog=PROG):
    """The command's options: --backend, every TrainConfig field but verbose, and --quiet."""
    from kres.cli.options import add_options
    from kres.training import TrainConfig

    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                parents=[_backend_option()],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, TrainConfig, exclude=("verbose",))
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    return p


def _backend_option():
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--backend", choices=("tensorflow", "jax"),
                   help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    return p


def main(argv=None, prog=PROG) -> int:
    args = parse_args(argv, prog)
    from kres import KresError
    from kres.cli.options import config_from, typed, usage_error
    from kres.training import TrainConfig, train

    config = config_from(TrainConfig, args, verbose=2 if args.quiet else "auto")
    try:
        config.check()
    except KresError as e:  # an option's value: a usage error
        return usage_error(prog, e)
    try:
        result = train(_checked(config), given=typed(parser(prog), argv, TrainConfig))
    except KresError as e:  # a user's mistake: no traceback
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    print(f"test_accuracy={result.metrics['test_accuracy']:.4f}")
    return 0


def _checked(config):
    """``config``, or a RunError for ``--resume`` of a directory that does not exist (a typo
    there would otherwise start a new run; the library's resume=True does, for the demo)."""
    from kres.errors import RunError

    run = config.run_dir()
    if config.resume and not config.qat and not os.path.isdir(run):
        raise RunError(f"--resume: there is no run at {run.path!r} to continue (no such "
                       "directory); leave out --resume to start one there")
    return config
