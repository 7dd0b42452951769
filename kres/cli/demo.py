"""The main job, on the embedded default: train resnet20 on scikit-learn's handwritten digits
(no download), then export it to verified SavedModel, TFLite and ONNX files (fp32, fp16, dynamic
range, int8 searched until it agrees with Keras) and print the manifest table, the deployment
table (what runs on which accelerator, what it costs) and the path of the int8 .tflite file.

    kres demo                        # the README's main command runs this
    kres demo --seed 1               # another initialisation and data order (runs/...-s1)
    kres demo --epochs 5 --out runs/quick --exports exports/quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time

PROG = "kres demo"


def parse_args(argv=None, prog=PROG):
    from kres.cli.options import add_options
    from kres.training import TrainConfig

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_options(parser, TrainConfig, only=("model", "data", "epochs", "seed", "out"))
    parser.add_argument("--exports", help="export directory (default exports/<run name>)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the run directory and train from scratch (default: "
                             "continue or reuse the run found there)")
    return parser.parse_args(argv)


def main(argv=None, prog=PROG) -> int:
    from kres import native

    native.import_tensorflow()
    args = parse_args(argv, prog)
    from kres import KresError
    from kres import export as kexport
    from kres.cli.options import config_from
    from kres.training import TrainConfig, train

    start = time.time()
    # resume=True starts a new run, continues a killed one, or re-evaluates a finished one.
    config = config_from(TrainConfig, args, resume=True)
    run = config.run_dir()
    exports = args.exports or kexport.default_out(run)
    if args.fresh and os.path.exists(run):
        import shutil

        shutil.rmtree(run)
    try:
        print(f"== training {config.model} on {config.data} (seed {config.seed}) -> {run}",
              flush=True)
        result = train(config)
        m = result.metrics
        print(f"== trained: final model test accuracy {m['test_accuracy']:.2%} (validation "
              f"{m['val_accuracy']:.2%}) after {m['epochs_completed']} epochs"
              + (f", {m['images_per_second']:.0f} images/s" if m["images_per_second"] else ""))
        print(f"== exporting {result.run.best} (the epoch with the best validation accuracy, "
              f"{m['best_val_accuracy']:.2%}) -> {exports}", flush=True)
        manifest = kexport.export(result.run, exports)
    except KresError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    print(manifest.table())
    print(manifest.deployment_table())
    print(f"== model card: {os.path.join(exports, manifest.data['card'])}")
    for a in manifest.artifacts:
        if a["quantization"] == "int8":
            print(f"== {a['path']}: int8 setting {a['int8']['kept']!r}, top-1 agreement with "
                  f"Keras {a['top1_agreement']:.2%} on {manifest.data['verification']['samples']} "
                  "test images")
    print(f"== int8 TFLite model for the phone: {manifest.artifact('tflite', 'int8')}")
    print(f"== done in {time.time() - start:.0f} s")
    return 0
