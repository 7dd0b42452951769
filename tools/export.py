"""Quantise and export a kres model, verified: a thin command line over kres.export.export.

    python tools/export.py runs/digits-resnet20/best.keras --data digits --out exports/digits-resnet20
    python tools/export.py runs/digits-resnet20 --formats tflite --quantize int8 --io uint8
    python tools/export.py resnet50 --formats onnx --out exports/resnet50   # a freshly built model

Every artifact is loaded back in its runtime and compared with Keras before anything is written;
the manifest table is printed at the end. Exit status 1 (naming the artifact) when one fails.
"""

import argparse
import os
import signal
import sys

FORMATS = "saved_model,tflite,onnx"
QUANTIZATIONS = "fp32,fp16,dynamic,int8"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a .keras file, a training run directory, or a model name")
    p.add_argument("--out", help="export directory (default exports/<model or run name>)")
    p.add_argument("--data", help="dataset for calibration (train) and verification (test); "
                                  "default: the run's config.json, else generated images")
    p.add_argument("--formats", default=FORMATS, help=f"comma-separated (default {FORMATS})")
    p.add_argument("--quantize", help=f"comma-separated subset of {QUANTIZATIONS} "
                                      "(default: all that apply)")
    p.add_argument("--io", choices=("float", "int8", "uint8"), default="float",
                   help="input/output type of the int8 TFLite file (default float)")
    p.add_argument("--calibration-samples", type=int, default=200)
    p.add_argument("--verify-samples", type=int, help="test images to verify on (default all)")
    p.add_argument("--weights", help="pretrained weights for a model name (passed to kres.build)")
    p.add_argument("--data-dir", help="tensorflow-datasets data directory")
    p.add_argument("--threads", type=int, default=2, help="runtime threads (default 2)")
    p.add_argument("--max-abs-diff", type=float, default=1e-4,
                   help="fp32 tolerance against Keras (default 1e-4)")
    p.add_argument("--max-rel-diff", type=float, default=1e-5,
                   help="fp32 tolerance relative to the largest Keras output, when larger "
                        "(default 1e-5)")
    p.add_argument("--min-agreement", type=float, default=0.98,
                   help="quantised top-1 agreement with Keras (default 0.98)")
    return p.parse_args(argv)


def default_out(model):
    model = os.path.normpath(model)
    if model.endswith(".keras"):
        model = os.path.dirname(model) or os.path.splitext(model)[0]
    return os.path.join("exports", os.path.basename(model))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A killed export must still clean up its staging directory: treat SIGTERM like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    import kres.data
    import kres.export

    out = args.out or default_out(args.model)
    try:
        manifest = kres.export.export(
            args.model, out, data=args.data, formats=args.formats, quantize=args.quantize,
            io=args.io, calibration_samples=args.calibration_samples,
            verify_samples=args.verify_samples, weights=args.weights, data_dir=args.data_dir,
            threads=args.threads, max_abs_diff=args.max_abs_diff,
            max_rel_diff=args.max_rel_diff, min_agreement=args.min_agreement)
    except (kres.KresError, kres.data.DataError) as error:
        print(f"tools/export.py: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tools/export.py: interrupted; {out} is as it was", file=sys.stderr)
        return 130
    print(manifest.table())
    print(f"manifest: {os.path.join(out, 'manifest.json')}")
    for artifact in manifest.artifacts:
        if (artifact["format"], artifact["quantization"]) == ("tflite", "int8"):
            print(f"int8 TFLite: {os.path.join(out, artifact['path'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
