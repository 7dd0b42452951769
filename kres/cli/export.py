"""Quantise and export a kres model, verified: a thin command line over kres.export.export.

    kres export runs/digits-resnet20 --out exports/digits-resnet20
    kres export runs/digits-resnet20 --formats tflite --quantize int8 --io uint8
    kres export resnet50 --formats onnx --out exports/resnet50   # a freshly built model
    kres export --check model.tflite     # the deployment report of any .tflite / .onnx file

Every artifact is loaded back in its runtime and compared with Keras before anything is written;
int8 settings are tried until one agrees with Keras; the manifest table is printed at the end.
Exit status 1 (naming the artifact) when one fails. Every option is a field of
kres.export.ExportConfig.
"""

from __future__ import annotations

import argparse
import os
import sys

PROG = "kres export"


def parser(prog=PROG):
    """The command's options: the model, --out and every ExportConfig field."""
    from kres.cli.options import add_options
    from kres.export import ExportConfig

    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?",
                   help="a training run directory, a .keras file, or a model name")
    p.add_argument("--check", metavar="FILE_OR_DIR",
                   help="print the deployment report of a .tflite or .onnx file (any, not only "
                        "kres') or of every such file in a directory, and exit")
    p.add_argument("--out", help="export directory (default exports/<run or model name>)")
    add_options(p, ExportConfig)
    return p


def main(argv=None, prog=PROG) -> int:
    from kres import native

    native.import_tensorflow()
    p = parser(prog)
    args = p.parse_args(argv)
    if args.check:
        return check(args.check, prog)
    if args.model is None:
        p.error("give a model (a training run directory, a .keras file or a model name), or "
                "--check FILE_OR_DIR")
    import kres.export
    from kres.files import interrupt_on

    # A killed export must still clean up its staging directory: treat SIGTERM like Ctrl-C.
    interrupt_on()
    from kres.cli.options import config_from, usage_error

    out = args.out or kres.export.default_out(args.model)
    try:
        config = config_from(kres.export.ExportConfig, args)
    except kres.KresError as error:  # an option's value: a usage error
        return usage_error(prog, error)
    try:
        manifest = kres.export.export(args.model, out, config)
    except kres.KresError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {out} is as it was", file=sys.stderr)
        return 130
    print(manifest.table())
    print(manifest.deployment_table())
    print(f"manifest: {os.path.join(out, 'manifest.json')}")
    for artifact in manifest.artifacts:
        if (artifact["format"], artifact["quantization"]) == ("tflite", "int8"):
            print(f"int8 TFLite: {os.path.join(out, artifact['path'])}")
    return 0


def check(path, prog=PROG) -> int:
    """``--check``: the deployment table of ``path``; a bad path is one line and exit status 2."""
    from kres.errors import ExportError
    from kres.export import deployment
    from kres.export.manifest import deployment_table

    try:
        reports = deployment.check(path)
    except ExportError as error:
        print(f"{prog}: error: --check: {error}", file=sys.stderr)
        return 2
    print(deployment_table(reports))
    return 0
