"""Command-line options from a config dataclass, for every kres command: each field declared with
:func:`kres.options.option` becomes ``--field-name``, with its help text, its choices and its
default, and parsed arguments become the config again.

- the type comes from the annotation: ``int``, ``float``, ``str``, each also ``X | None``;
  ``tuple[str, ...]`` is a comma-separated list (``--formats tflite,onnx``);
- ``bool`` with default False is a flag (``--resume``); ``bool`` defaulting to True or None
  takes ``--x`` / ``--no-x`` (None: neither given, the config decides);
- a field whose type is itself such a dataclass adds its own fields, as a group.

>>> parser = argparse.ArgumentParser()
>>> add_options(parser, ExportConfig)
>>> config = config_from(ExportConfig, parser.parse_args(["--formats", "tflite"]))
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

from kres.options import is_option


def add_options(parser, config_class, *, only=None, exclude=()):
    """Add an option to ``parser`` for each field of ``config_class`` declared with
    :func:`kres.options.option` (those named in ``only`` when given, less ``exclude``)."""
    hints = typing.get_type_hints(config_class)
    for field in _fields(config_class, only, exclude):
        kind = _unwrap(hints[field.name])
        if dataclasses.is_dataclass(kind):
            add_options(parser.add_argument_group(field.metadata["help"]), kind)
            continue
        parser.add_argument(_flag(field), **_argument(config_class, field, kind))


def config_from(config_class, args, **values):
    """``config_class`` made from ``args`` parsed by a parser :func:`add_options` filled, with
    ``values`` besides; fields the parser has no option for keep their defaults."""
    hints = typing.get_type_hints(config_class)
    for field in _fields(config_class, None, tuple(values)):
        kind = _unwrap(hints[field.name])
        if dataclasses.is_dataclass(kind):
            values[field.name] = config_from(kind, args)
        elif hasattr(args, field.name):
            values[field.name] = getattr(args, field.name)
    return config_class(**values)


def typed(parser, argv, config_class) -> set[str]:
    """The fields of ``config_class`` whose options ``argv`` gives, even at their default value
    (``--model resnet20`` is typed; a field left out is not). ``parser`` is a fresh parser of
    the command, parsed again here with every default a marker."""
    names = [f.name for f in _fields(config_class, None, ())]
    left_out = object()  # not a string: argparse would run a string default through the type
    parser.set_defaults(**dict.fromkeys(names, left_out))
    parsed = vars(parser.parse_args(argv))
    return {name for name in names if parsed.get(name, left_out) is not left_out}


def usage_error(prog, message) -> int:
    """Exit status 2 (argparse's for a usage error) after one line naming the option."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _fields(config_class, only, exclude):
    return [f for f in dataclasses.fields(config_class) if is_option(f)
            and (only is None or f.name in only) and f.name not in exclude]


def _flag(field):
    return f"--{field.name.replace('_', '-')}"


def _unwrap(kind):
    """``X`` of ``X | None``; anything else as it is."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind


def _argument(config_class, field, kind):
    """The keyword arguments of ``parser.add_argument`` for ``field``."""
    help, choices, default = field.metadata["help"], field.metadata["choices"], field.default
    help = help.replace("%", "%%")  # argparse formats help texts with %
    if kind is bool:
        if default is False:
            return dict(action="store_true", help=help)
        shown = _flag(field) if default else None  # None: neither flag, the config decides
        return dict(action=argparse.BooleanOptionalAction, default=default,
                    help=_with_default(help, shown))
    if typing.get_origin(kind) is tuple:
        if choices:
            help += f"; comma-separated, of {', '.join(choices)}"
        shown = ",".join(default) if default else None
        return dict(type=_comma_separated, default=default, help=_with_default(help, shown))
    if kind not in (int, float, str):
        raise TypeError(f"{config_class.__name__}.{field.name}: {kind} has no command-line "
                        "form; exclude the field or give it int, float, str, bool or a tuple")
    return dict(type=kind, default=default, choices=choices, help=_with_default(help, default))


def _with_default(help, default):
    return help if default is None else f"{help} (default: {default})"


def _comma_separated(text):
    return tuple(item.strip() for item in text.split(",") if item.strip())
