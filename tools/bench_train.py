"""Benchmark the default training recipe: accuracy and wall time, as a table.

    python tools/bench_train.py                      # resnet20 on digits, default settings
    python tools/bench_train.py --models resnet20 resnet32 --epochs 30

Acceptance figure for the main job: resnet20 on digits with the defaults must reach at least
97 % test accuracy; the script exits with status 1 when a run falls below --min-accuracy.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet20"])
    p.add_argument("--data", default="digits")
    p.add_argument("--epochs", type=int, help="default: the recipe's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="keep the runs here (default: a temporary directory)")
    p.add_argument("--min-accuracy", type=float, default=0.97)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from kres.training import TrainConfig, train

    root = args.out or tempfile.mkdtemp(prefix="kres-bench-")
    rows = []
    for model in args.models:
        out = os.path.join(root, f"{model}-{args.data.replace(':', '-').replace('/', '-')}")
        start = time.perf_counter()
        result = train(TrainConfig(model=model, data=args.data, epochs=args.epochs, seed=args.seed,
                                   out=out, verbose=2))
        wall = time.perf_counter() - start
        m = result.metrics
        rows.append((model, args.data, m["epochs_completed"], m["test_accuracy"], m["val_accuracy"],
                     wall, m["images_per_second"]))
    if not args.out:
        shutil.rmtree(root, ignore_errors=True)

    header = ("model", "data", "epochs", "test acc", "val acc", "wall s", "train img/s")
    print("\n| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for model, data, epochs, test, val, wall, ips in rows:
        print(f"| {model} | {data} | {epochs} | {test:.2%} | {val:.2%} | {wall:.0f} | {ips:.0f} |")
    failed = [r[0] for r in rows if r[3] < args.min_accuracy]
    if failed:
        print(f"below {args.min_accuracy:.0%} test accuracy: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
