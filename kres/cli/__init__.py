"""``kres``: the command line, one subcommand per module of this package.

    kres train --model resnet20 --data digits        # a run directory under runs/
    kres export runs/digits-resnet20                 # verified files under exports/
    kres demo | validate | benchmark | list | predict
    kres <command> --help                            # its options

Each module of :data:`COMMANDS` has ``main(argv=None) -> int`` and is imported only when its
command runs, so ``kres --help`` answers at once. ``python -m kres`` is the same command.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "kres.cli.train",
    "export": "kres.cli.export",
    "demo": "kres.cli.demo",
    "validate": "kres.cli.validate",
    "benchmark": "kres.cli.benchmark",
    "list": "kres.cli.list",
    "predict": "kres.cli.predict",
}
SUMMARIES = {
    "train": "train a model into a run directory (runs/<data>-<model>)",
    "export": "convert a model or run to SavedModel, TFLite and ONNX files, each verified",
    "demo": "the main job: train resnet20 on the embedded digits, then export it",
    "validate": "top-1 and top-5 accuracy of a checkpoint on a dataset split",
    "benchmark": "measure kres against what users would pick instead, on this machine",
    "list": "the names of the models (kres list 'resnet5*')",
    "predict": "run a trained or exported model on images",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: kres <command> [options]", "",
             "kres: residual networks for Keras 3, from training to verified phone files.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {SUMMARIES.get(name, '')}".rstrip() for name in COMMANDS]
    lines += ["", "kres <command> --help lists the options of a command; kres --version."]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run ``kres <command> [options]``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        from kres import __version__

        print(f"kres {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        from kres.errors import suggest

        print(f"kres: unknown command {name!r}; closest: {suggest(name, COMMANDS)}. Commands: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name])
    except ModuleNotFoundError as error:
        if error.name != COMMANDS[name]:
            raise
        print(f"kres {name}: this installation of kres has no {name} command (module "
              f"{COMMANDS[name]} is missing)", file=sys.stderr)
        return 1
    return module.main(argv[1:]) or 0
