"""Train a kres model: a thin command line over kres.training.train.

    python tools/train.py --model resnet20 --data digits --epochs 30 --out runs/digits-resnet20
    python tools/train.py --out runs/digits-resnet20 --resume          # after a kill
    python tools/train.py --backend jax --distribute data-parallel ... # Colab TPU, multi-device

Every option left out takes the per-family default (see kres/training/config.py).
"""

import argparse
import os
import sys

DISTRIBUTE = ("auto", "none", "mirrored", "tpu", "data-parallel")
PRECISION = ("auto", "none", "float16", "bfloat16")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20", help="a kres model name (default resnet20)")
    p.add_argument("--data", default="digits",
                   help="digits | tfds:NAME | folder:PATH (default digits)")
    p.add_argument("--out", help="run directory (default runs/<data>-<model>)")
    p.add_argument("--backend", choices=("tensorflow", "jax"),
                   help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    p.add_argument("--distribute", choices=DISTRIBUTE, default="auto")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch size, over all replicas and hosts")
    p.add_argument("--lr", type=float, help="peak learning rate per 256 images (scaled to the batch)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--drop-path-rate", type=float)
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--image-size", type=int)
    p.add_argument("--mixed-precision", choices=PRECISION, default="auto")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="synchronised BatchNorm (default: on with more than one TF replica)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--data-dir", help="tensorflow-datasets data directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="use only this many examples per split")
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--coordinator-address", help="multi-host JAX: host:port of process 0")
    p.add_argument("--num-processes", type=int, help="multi-host JAX: number of processes")
    p.add_argument("--process-id", type=int, help="multi-host JAX: this process's index")
    p.add_argument("--multi-host", action="store_true",
                   help="multi-host JAX on Cloud TPU (jax.distributed.initialize() discovers the pod)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        # Must happen before anything imports keras.
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
            sys.exit("tools/train.py: --backend must be chosen before keras is imported")
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from kres import KresError
    from kres.data import DataError
    from kres.training import ConfigError, TrainConfig, train

    config = TrainConfig(
        model=args.model, data=args.data, out=args.out, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, drop_path_rate=args.drop_path_rate,
        warmup_epochs=args.warmup_epochs, image_size=args.image_size,
        mixed_precision=args.mixed_precision, distribute=args.distribute, sync_bn=args.sync_bn,
        resume=args.resume, data_dir=args.data_dir, seed=args.seed, limit=args.limit,
        steps_per_epoch=args.steps_per_epoch, coordinator_address=args.coordinator_address,
        num_processes=args.num_processes, process_id=args.process_id, multi_host=args.multi_host,
        verbose=2 if args.quiet else "auto",
    )
    try:
        result = train(config)
    except (KresError, ConfigError, DataError) as e:  # a user's mistake: no traceback
        sys.exit(f"tools/train.py: {e}")
    print(f"test_accuracy={result.metrics['test_accuracy']:.4f}")
    return result


if __name__ == "__main__":
    main()
