"""Quantise and export a kres model, verified: a thin command line over kres.export.export.

    python tools/export.py runs/digits-resnet20 --out exports/digits-resnet20
    python tools/export.py runs/digits-resnet20 --formats tflite --quantize int8 --io uint8
    python tools/export.py resnet50 --formats onnx --out exports/resnet50   # a freshly built model

Every artifact is loaded back in its runtime and compared with Keras before anything is written;
int8 settings are tried until one agrees with Keras; the manifest table is printed at the end.
Exit status 1 (naming the artifact) when one fails.
"""

import argparse
import dataclasses
import inspect
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from kres.export import FORMATS, QUANTIZATIONS, Tolerances, export
    from kres.export.tflite import IO_TYPES

    defaults = {name: p.default for name, p in inspect.signature(export).parameters.items()}
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a .keras file, a training run directory, or a model name")
    p.add_argument("--out", help="export directory (default exports/<model or run name>)")
    p.add_argument("--data", help="dataset for calibration (train) and verification (test); "
                                  "default: the run's config.json, else generated images")
    p.add_argument("--formats", default=",".join(FORMATS),
                   help=f"comma-separated subset of {','.join(FORMATS)} (default all)")
    p.add_argument("--quantize", help=f"comma-separated subset of {','.join(QUANTIZATIONS)} "
                                      "(default: all that apply)")
    p.add_argument("--io", choices=IO_TYPES, default=defaults["io"],
                   help=f"input/output type of the int8 TFLite file (default {defaults['io']})")
    for name in ("calibration_samples", "verify_samples", "threads", "opset", "latency_repeats"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=defaults[name],
                       help=f"default {defaults[name] or 'all'}")
    p.add_argument("--weights", help="pretrained weights for a model name (passed to kres.build)")
    p.add_argument("--data-dir", help="tensorflow-datasets data directory")
    p.add_argument("--no-metadata", action="store_true",
                   help="do not embed labels and normalisation in the TFLite files")
    for field in dataclasses.fields(Tolerances):
        p.add_argument(f"--{field.name.replace('_', '-')}", type=float, default=field.default,
                       help=f"verification tolerance (default {field.default})")
    return p.parse_args(argv)


def default_out(model):
    model = os.path.normpath(model)
    if model.endswith(".keras"):
        model = os.path.dirname(model) or os.path.splitext(model)[0]
    return os.path.join("exports", os.path.basename(model))


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_args(argv)
    import kres.export
    from kres.files import interrupt_on

    # A killed export must still clean up its staging directory: treat SIGTERM like Ctrl-C.
    interrupt_on()

    out = args.out or default_out(args.model)
    try:
        tolerances = kres.export.Tolerances(**{
            f.name: getattr(args, f.name) for f in dataclasses.fields(kres.export.Tolerances)})
        manifest = kres.export.export(
            args.model, out, data=args.data, formats=args.formats, quantize=args.quantize,
            io=args.io, calibration_samples=args.calibration_samples,
            verify_samples=args.verify_samples, weights=args.weights, data_dir=args.data_dir,
            threads=args.threads, opset=args.opset, latency_repeats=args.latency_repeats,
            tolerances=tolerances, metadata=not args.no_metadata)
    except kres.KresError as error:
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
