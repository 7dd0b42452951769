"""What a model says about your pictures: a thin command line over ``kres.predict``.

    tools/predict.py runs/digits-resnet20 my_digits/                 # a training run, a folder
    tools/predict.py exports/digits-resnet20/resnet20_int8.tflite a.png b.jpg --top-k 3
    tools/predict.py resnet50 --weights a1_in1k "photos/*.jpg" --csv predictions.csv
    tools/predict.py runs/x/best.keras pictures/ --compare exports/x/resnet20_int8.tflite \\
        exports/x/resnet20_int8.onnx                                 # top-1 agreement

SOURCE: a model name (with --weights), a .keras file, a training run directory, an export
directory (its fp32 TFLite file; name another artifact by its path), a .tflite or .onnx file or a
SavedModel directory. IMAGES: files, folders (recursive) and glob patterns; JPEG, PNG, BMP, GIF.
Pictures are prepared as recorded for the source (its run's config.json, the export's manifest,
the TFLite metadata or the pretrained tag), and the table says how. Pictures that cannot be
read are named on stderr, one line each, and skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

PROG = "kres predict"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2, as for every usage error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parser(prog=PROG):
    import inspect

    import kres.predict

    defaults = {name: parameter.default for name, parameter in
                inspect.signature(kres.predict.predict).parameters.items()}
    top_k, batch_size = defaults["top_k"], defaults["batch_size"]
    p = _Parser(prog=prog, description=__doc__.split("\n\n")[0],
                epilog=__doc__.split("\n\n", 1)[1],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="the model: see below")
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--top-k", type=_positive, default=top_k, metavar="K",
                   help=f"classes to show per picture (default {top_k})")
    p.add_argument("--weights", help="for a model name: a pretrained tag, imagenet or a "
                                     "weights file (as kres.build takes)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    out.add_argument("--csv", metavar="PATH", help="write the results as CSV here")
    p.add_argument("--compare", nargs="+", metavar="OTHER",
                   help="also run these sources on the same pictures and report their top-1 "
                        "agreement with SOURCE (give IMAGES before --compare)")
    p.add_argument("--batch-size", type=_positive, default=batch_size, metavar="N",
                   help=f"pictures decoded and run at a time (default {batch_size})")
    return p


def main(argv=None, prog=PROG) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kres import native

    native.import_tensorflow()  # before Keras: TensorFlow's start-up lines filtered
    import kres.predict
    from kres.errors import KresError

    try:
        args = parser(prog).parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2, its line already printed)
        return done.code
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    try:
        if args.compare:
            result = kres.predict.compare([args.source, *args.compare], args.images,
                                          args.top_k, weights=args.weights,
                                          batch_size=args.batch_size, progress=progress)
            first = result.predictions[0]
        else:
            result = first = kres.predict(args.source, args.images, args.top_k,
                                          weights=args.weights, batch_size=args.batch_size,
                                          progress=progress)
    except kres.predict.ImageError as error:
        _done(progress)
        for failure in error.failures:
            print(f"{prog}: error: {failure.line()}", file=sys.stderr)
        return 1
    except KresError as error:
        _done(progress)
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _done(progress)
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    _done(progress)
    if args.json or args.csv:
        (result.to_json if args.json else result.to_csv)(args.json or args.csv)
        print(f"{'compared' if args.compare else 'predictions'} written to "
              f"{args.json or args.csv}")
    else:
        print(result.table())
    for failure in first.failed:
        print(f"{prog}: error: {failure.line()}", file=sys.stderr)
    print(f"{prog}: {first.summary()}")
    return 1 if first.failed else 0


class _Progress:
    """``done/total`` pictures and the rate so far, rewritten in place on a terminal."""

    def __init__(self, stream):
        self.stream, self.start, self.shown = stream, time.perf_counter(), False

    def __call__(self, done, total):
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        width = 30
        filled = width * done // max(total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} images, "
                          f"{rate:.0f}/s")
        self.stream.flush()
        self.shown = True

    def finish(self):
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _done(progress):
    if progress is not None:
        progress.finish()


if __name__ == "__main__":
    sys.exit(main())
