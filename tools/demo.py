"""The main job, on the embedded default: train resnet20 on scikit-learn's handwritten digits
(no download), then export it to verified SavedModel, TFLite and ONNX files (fp32, fp16, dynamic
range, int8 searched until it agrees with Keras) and print the manifest table and the path of the
int8 .tflite file.

    python tools/demo.py                        # the README's main command runs this
    python tools/demo.py --seed 1               # another initialisation and data order
    python tools/demo.py --epochs 5 --out runs/quick --exports exports/quick
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--out", help="training run directory (default runs/<data>-<model>, "
                                      "with -s<seed> for seeds other than 0)")
    parser.add_argument("--exports", help="export directory (default exports/<run name>)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete --out and train from scratch (default: continue or reuse the "
                             "run found there)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run_name = f"{args.data.split(':')[-1].replace('/', '-')}-{args.model}" + (
        f"-s{args.seed}" if args.seed else "")
    out = args.out or os.path.join("runs", run_name)
    exports = args.exports or os.path.join("exports", os.path.basename(os.path.normpath(out)))

    from kres import KresError
    from kres import export as kexport
    from kres import rundir
    from kres.training import TrainConfig, train

    start = time.time()
    if args.fresh and os.path.exists(out):
        import shutil

        shutil.rmtree(out)
    try:
        # resume=True starts a new run, continues a killed one, or re-evaluates a finished one.
        print(f"== training {args.model} on {args.data} (seed {args.seed}) -> {out}", flush=True)
        result = train(TrainConfig(model=args.model, data=args.data, out=out, epochs=args.epochs,
                                   seed=args.seed, resume=True))
        m = result.metrics
        print(f"== trained: final model test accuracy {m['test_accuracy']:.2%} (validation "
              f"{m['val_accuracy']:.2%}) after {m['epochs_completed']} epochs"
              + (f", {m['images_per_second']:.0f} images/s" if m["images_per_second"] else ""))
        best = os.path.join(out, rundir.BEST)
        print(f"== exporting {best} (the epoch with the best validation accuracy, "
              f"{m['best_val_accuracy']:.2%}) -> {exports}", flush=True)
        manifest = kexport.export(best, exports, data=args.data)
    except KresError as error:
        print(f"tools/demo.py: error: {error}", file=sys.stderr)
        return 1
    print(manifest.table())
    for a in manifest.artifacts:
        if a["quantization"] == "int8":
            print(f"== {a['path']}: int8 setting {a['int8']['kept']!r}, top-1 agreement with "
                  f"Keras {a['top1_agreement']:.2%} on {manifest.data['verification']['samples']} "
                  "test images")
    print(f"== int8 TFLite model for the phone: {manifest.artifact('tflite', 'int8')}")
    print(f"== done in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
