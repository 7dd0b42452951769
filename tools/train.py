"""Train a kres model: a thin command line over kres.training.train.

    python tools/train.py --model resnet20 --data digits --epochs 30 --out runs/digits-resnet20
    python tools/train.py --out runs/digits-resnet20 --resume          # after a kill
    python tools/train.py --backend jax --distribute data-parallel ... # Colab TPU, multi-device

Every option is a field of kres.training.TrainConfig (its help text is the field's); every one
left out takes the per-family default.
"""

import argparse
import dataclasses
import os
import sys
import typing

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    """--backend must be known before Keras is imported, so it is parsed first."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--backend", choices=("tensorflow", "jax"),
                       help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    known, _ = early.parse_known_args(argv)
    if known.backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != known.backend:
            sys.exit("tools/train.py: --backend must be chosen before keras is imported")
        os.environ["KERAS_BACKEND"] = known.backend
    from kres import native

    native.import_tensorflow()  # tf.data on every backend; its start-up lines filtered
    from kres.training import TrainConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[early],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.name == "verbose":
            continue
        flag, meta = f"--{field.name.replace('_', '-')}", field.metadata
        kind = hints[field.name]
        if kind is bool:
            p.add_argument(flag, action="store_true", help=meta["help"])
        elif bool in typing.get_args(kind):  # bool | None: --x / --no-x / the default
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=meta["help"])
        else:
            base = next(t for t in (int, float, str) if t is kind or t in typing.get_args(kind))
            p.add_argument(flag, type=base, default=field.default, choices=meta["choices"],
                           help=meta["help"])
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from kres import KresError
    from kres.training import TrainConfig, train

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
              if f.name != "verbose"}
    try:
        result = train(TrainConfig(**values, verbose=2 if args.quiet else "auto"))
    except KresError as e:  # a user's mistake: no traceback
        sys.exit(f"tools/train.py: {e}")
    print(f"test_accuracy={result.metrics['test_accuracy']:.4f}")
    return result


if __name__ == "__main__":
    main()
