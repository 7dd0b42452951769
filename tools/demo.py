"""The main job, on the embedded default: train resnet20 on scikit-learn's handwritten digits
(no download), then export it to verified SavedModel, TFLite and ONNX files (fp32, fp16, dynamic
range, int8) and print the manifest table and the path of the int8 .tflite file.

    python tools/demo.py                        # the README's main command runs this
    python tools/demo.py --epochs 5 --out runs/quick --exports exports/quick
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", default="runs/digits-resnet20", help="training run directory")
    parser.add_argument("--exports", default="exports/digits-resnet20", help="export directory")
    parser.add_argument("--fresh", action="store_true",
                        help="delete --out and train from scratch (default: continue or reuse the "
                             "run found there)")
    args = parser.parse_args(argv)

    from kres import export as kexport
    from kres.training import TrainConfig, train

    start = time.time()
    if args.fresh and os.path.exists(args.out):
        import shutil

        shutil.rmtree(args.out)
    # resume=True starts a new run, continues a killed one, or re-evaluates a finished one.
    print(f"== training {args.model} on {args.data} -> {args.out}")
    result = train(TrainConfig(model=args.model, data=args.data, out=args.out, epochs=args.epochs,
                               resume=True))
    m = result.metrics
    print(f"== trained: final model test accuracy {m['test_accuracy']:.2%} (validation "
          f"{m['val_accuracy']:.2%}) after {m['epochs_completed']} epochs"
          + (f", {m['images_per_second']:.0f} images/s" if m["images_per_second"] else ""))

    print(f"== exporting {args.out}/best.keras (the epoch with the best validation accuracy, "
          f"{m['best_val_accuracy']:.2%}) -> {args.exports}")
    manifest = kexport.export(os.path.join(args.out, "best.keras"), args.exports, data=args.data)
    print(manifest.table())
    int8 = manifest.artifact("tflite", "int8")
    print(f"== int8 TFLite model for the phone: {int8}")
    print(f"== done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
