"""Config fields that carry their own command-line help: the one convention of every config
dataclass in kres (`kres.training.TrainConfig`, `kres.export.ExportConfig`), on the ground floor
so that each package may use it. `kres.cli.options` turns such a dataclass into argparse
options; a field declared without :func:`option` is for Python callers only."""

from __future__ import annotations

import dataclasses


def option(default, help, choices=None):
    """A config field with its command-line help and, for a field that takes one of a few
    values (or, for a tuple field, several of them), those values."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def is_option(field: dataclasses.Field) -> bool:
    """Whether ``field`` was declared with :func:`option`."""
    return "help" in field.metadata
