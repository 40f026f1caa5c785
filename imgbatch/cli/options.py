"""CLI options derived from a parameter model: one definition of names, defaults and help.

Values are handed to the model as the user typed them; the model parses and checks them
(so `--size 0` and a Prefect deployment run with size 0 fail with the same words).
Options the user did not give are left out, so the defaults are the model's.
"""

from __future__ import annotations

import argparse
import types
import typing

from pydantic import BaseModel
from pydantic.fields import FieldInfo


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _choices(annotation) -> tuple | None:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return None


def _is_list(annotation) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) is list


def _help(field: FieldInfo) -> str:
    text = field.description or ""
    if not field.is_required() and field.default not in (None, False):
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        text += f" (default: {default})"
    return text.replace("%", "%%")


def add_options(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    positional: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
) -> None:
    """One option (or positional argument) per field of `model`."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        kwargs: dict = {"help": _help(field)}
        if _is_list(field.annotation) and name not in ("partitions",):
            kwargs["nargs"] = "+"
        if name in positional:
            parser.add_argument(name, metavar=name.upper(), **kwargs)
            continue
        if field.annotation is bool:
            kwargs["action"] = "store_true"
        elif choices := _choices(field.annotation):
            kwargs["choices"] = choices
        kwargs["required"] = field.is_required()
        parser.add_argument(flag(name), dest=name, default=argparse.SUPPRESS, **kwargs)


def values(args: argparse.Namespace, model: type[BaseModel]) -> dict:
    """The fields of `model` the user gave."""
    return {k: v for k, v in vars(args).items() if k in model.model_fields}


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    model: type[BaseModel],
    check,
    run,
    positional: tuple[str, ...] = (),
    **texts: str,
) -> argparse.ArgumentParser:
    """A subcommand whose options are `model`'s fields: `check(args)` gives the checked
    parameters (before Prefect starts), `run(args, params)` runs the flow."""
    parser = sub.add_parser(name, **texts)
    add_options(parser, model, positional)
    parser.set_defaults(check=check, run=run)
    return parser
