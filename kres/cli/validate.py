"""Evaluate a checkpoint the way its source did: top-1 and top-5 on a dataset split.

    kres validate resnet50 --weights a1_in1k --data tfds:imagenet2012 --split validation
    kres validate resnet20 --weights runs/digits-resnet20/best.keras --data digits

A pretrained tag is evaluated at its own resolution, crop fraction and interpolation
(kres.preprocessing(name, tag)); a local file at the size it was saved with. A thin command line
over kres.training.evaluate.
"""

from __future__ import annotations

import argparse
import sys

PROG = "kres validate"


def main(argv=None, prog=PROG) -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a kres model name")
    p.add_argument("--weights", required=True,
                   help="a pretrained tag, imagenet, or a .keras/.weights.h5/.h5/.safetensors file")
    p.add_argument("--data", required=True, help="digits | tfds:NAME | folder:PATH")
    p.add_argument("--split", default="test", help="train | validation | test (default test)")
    p.add_argument("--data-dir", help="tensorflow-datasets data directory")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, help="default: the checkpoint's evaluation size")
    p.add_argument("--limit", type=int, help="evaluate only this many images")
    args = p.parse_args(argv)
    for name in ("batch_size", "limit", "image_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"argument --{name.replace('_', '-')}: expected a positive integer, got "
                    f"{value}")
    from kres import native

    native.import_tensorflow()
    from kres import KresError
    from kres.training import evaluate

    try:
        result = evaluate(args.model, args.weights, args.data, split=args.split,
                          batch_size=args.batch_size, image_size=args.image_size,
                          limit=args.limit, data_dir=args.data_dir)
    except KresError as e:  # a user's mistake: no traceback
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    print(result.line())
    print(f"top1={result.top1:.4f} top5={result.top5:.4f}")
    return 0
