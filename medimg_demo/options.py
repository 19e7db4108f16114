"""Command-line options generated from config dataclasses, so that an option is written once: its field (type,
default) and its ``metadata`` (``help``, optional ``flag``, ``cli=False`` to keep it off the command line).

A bool field that defaults to False becomes ``--name``; one that defaults to True becomes ``--no-name``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from typing import Any, TypeVar

T = TypeVar("T")

_TYPES = {"int": int, "float": float, "str": str}


def _default(f: dataclasses.Field) -> Any:  # type: ignore[type-arg]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def cli_fields(cls: type) -> list[dataclasses.Field]:  # type: ignore[type-arg]
    """The fields of ``cls`` that are command-line options."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def flag(f: dataclasses.Field) -> str:  # type: ignore[type-arg]
    """The option string of a field."""
    if "flag" in f.metadata:
        return str(f.metadata["flag"])
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.type in ("bool", bool) and _default(f) is True else f"--{name}"


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One argparse option per command-line field of the dataclass ``cls``."""
    for f in cli_fields(cls):
        default = _default(f)
        kw: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", "")}
        if f.type in ("bool", bool):
            kw["action"] = "store_false" if default is True else "store_true"
        else:
            kw["type"] = _TYPES.get(str(f.type).split(" |")[0], str)
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            if default is dataclasses.MISSING:
                kw["required"] = True
            else:
                kw["default"] = default
                if kw["help"] and default not in ("", None) and "(default:" not in kw["help"]:
                    kw["help"] += f" (default: {default})"  # an empty default had printed "(default: )"
        parser.add_argument(flag(f), **kw)


def bounded(kind: type, low: float, high: float) -> Any:
    """An argparse ``type`` that converts with ``kind`` and refuses values outside [low, high] with a usage error
    (exit 2) naming the range, instead of a traceback or a silently clipped value later."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            shown = (lambda v: f"{v:g}") if kind is float else str  # an int bound in full, not as 2.14748e+09
            raise argparse.ArgumentTypeError(f"{text} is outside {shown(low)} to {shown(high)}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """The dataclass ``cls`` filled from parsed ``args`` (command-line fields) and ``overrides``."""
    values = {f.name: getattr(args, f.name) for f in cli_fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)  # type: ignore[call-arg]


def command_args(cls: type, values: dict[str, Any], always: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> str:
    """The options that reproduce ``values``: every field in ``always``, and every other one that differs from its
    default (a bool as its flag)."""
    parts: list[str] = []
    for f in cli_fields(cls):
        if f.name in skip or f.name not in values:
            continue
        value, default = values[f.name], _default(f)
        if f.type in ("bool", bool):
            if bool(value) != bool(default):
                parts.append(flag(f))
        elif f.name in always or value != default:
            parts += [flag(f), shlex.quote(str(value))]
    return " ".join(parts)
