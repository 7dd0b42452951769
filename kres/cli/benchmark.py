"""Measure kres against what users would pick instead, on this machine, in one run.

    kres benchmark --suite quick                  # about 5 minutes on 2 cores
    kres benchmark --suite quick --backends tensorflow jax   # and the JAX rows
    kres benchmark --suite full --json bench.json # for reports
    kres benchmark --tables training --backends tensorflow --main-job
    kres benchmark --profile-training             # op-by-op time of resnet20 training
    kres benchmark --profile-inference            # op-by-op time of ResNet-50 b32 inference

Prints the machine (CPU, load average at start and end, float32 GEMM rate), then inference,
deployment and training tables; every figure is the median of alternated runs. A thin command
line over kres.bench.run.
"""

from __future__ import annotations

import argparse
import sys

PROG = "kres benchmark"


def main(argv=None, prog=PROG) -> int:
    from kres import native

    native.import_tensorflow()
    from kres import KresError
    from kres.bench import SUITES, TABLES, profile_inference, profile_training, report, run
    from kres.bench.common import BACKENDS

    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
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
    p.add_argument("--profile-inference", action="store_true",
                   help="instead of the suite: profile ResNet-50 batch-32 inference "
                        "(TensorFlow) and print its op time by op type and its convolutions' "
                        "GFLOP/s against the machine's GEMM rate")
    args = p.parse_args(argv)
    try:
        if args.profile_training:
            print(report.ops(profile_training(json_path=args.json)))
            return 0
        if args.profile_inference:
            print(report.ops(profile_inference(json_path=args.json)))
            return 0
        result = run(args.suite, tables=args.tables, backends=args.backends,
                     main_job=args.main_job, json_path=args.json)
    except KresError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    print(report.tables(result))
    job = result.get("main_job")
    if job and job["test_accuracy"] < args.min_accuracy:
        print(f"{prog}: the main job reached {job['test_accuracy']:.2%} test accuracy, below "
              f"--min-accuracy {args.min_accuracy:.0%}", file=sys.stderr)
        return 1
    return 0
