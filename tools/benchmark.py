"""Measure kres against what users would pick instead, on this machine, in one run.

    python tools/benchmark.py --suite quick                  # about 5 minutes on 2 cores
    python tools/benchmark.py --suite quick --backends tensorflow jax   # and the JAX rows
    python tools/benchmark.py --suite full --json bench.json # for reports
    python tools/benchmark.py --tables training --backends tensorflow --main-job
    python tools/benchmark.py --profile-training             # op-by-op time of resnet20 training

Prints the machine (CPU, load average at start and end, float32 GEMM rate), then inference,
deployment, pictures and training tables; every figure is the median of alternated runs. A thin
command line over kres.bench.run.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kres import KresError
    from kres.bench import SUITES, TABLES, profile_training, report, run
    from kres.bench.common import BACKENDS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="quick", choices=SUITES,
                   help="how much to measure (default: quick)")
    p.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES,
                   help="tables to measure (the machine table always is)")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, help="default: the suite's")
    p.add_argument("--main-job", action=argparse.BooleanOptionalAction, default=None,
                   help="also train the main job (resnet20 on digits, default recipe) and "
                        "report its wall time and accuracy (default: with --suite full)")
    p.add_argument("--min-accuracy", type=float, default=0.97,
                   help="exit with status 1 when the main job's test accuracy is below this")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON here")
    p.add_argument("--profile-training", action="store_true",
                   help="instead of the suite: profile resnet20 training steps (TensorFlow) "
                        "and print their op time by op type")
    args = p.parse_args(argv)
    try:
        if args.profile_training:
            return print(report.ops(profile_training(json_path=args.json)))
        result = run(args.suite, tables=args.tables, backends=args.backends,
                     main_job=args.main_job, json_path=args.json)
    except KresError as error:
        sys.exit(f"tools/benchmark.py: {error}")
    print(report.tables(result))
    job = result.get("main_job")
    if job and job["test_accuracy"] < args.min_accuracy:
        sys.exit(f"tools/benchmark.py: the main job reached {job['test_accuracy']:.2%} test "
                 f"accuracy, below --min-accuracy {args.min_accuracy:.0%}")


if __name__ == "__main__":
    main()
