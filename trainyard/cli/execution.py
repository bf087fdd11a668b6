"""The execution options as command-line flags, generated from ``ExecutionOptions`` (queues/options.py).

``@execution_flags`` adds one flag per option (``--docker-image``, ``--gpus``, ``--env VAR=VALUE``
...; list options repeat: ``--requirement``), with the model's help texts and bounds;
``given_options`` turns what was given back into keyword arguments for ``Task.create``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

import click

from ..queues.options import ExecutionOptions
from ..queues.record import ExecutionMode
from .pairs import name_value_pairs


def _kind(name: str) -> Any:
    """The option's type, ``X`` of an ``X | None``."""
    annotation = ExecutionOptions.model_fields[name].annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _flag(name: str) -> str:
    extra = ExecutionOptions.model_fields[name].json_schema_extra or {}
    return str(extra.get("flag") or "--" + name.replace("_", "-"))


def _click_option(name: str) -> Callable:
    field = ExecutionOptions.model_fields[name]
    extra = field.json_schema_extra or {}
    kind = _kind(name)
    origin = typing.get_origin(kind)
    ge = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), None)
    gt = next((m.gt for m in field.metadata if getattr(m, "gt", None) is not None), None)
    kwargs: dict[str, Any] = {"help": field.description, "default": None}
    if kind is ExecutionMode:
        kwargs["type"] = click.Choice([m.value for m in ExecutionMode])
    elif origin in (list, dict):
        kwargs.update(multiple=True, default=(), metavar=extra.get("metavar"))
    elif kind in (int, float):
        low = ge if ge is not None else gt
        kind_range = click.IntRange if kind is int else click.FloatRange
        kwargs["type"] = kind_range(min=low, min_open=gt is not None) if low is not None else kind
    return click.option(_flag(name), name, **kwargs)


def execution_flags(command: Callable) -> Callable:
    """Add a flag for every execution option to a click command."""
    for name in reversed(ExecutionOptions.names()):
        command = _click_option(name)(command)
    return command


def given_options(values: dict[str, Any]) -> dict[str, Any]:
    """Pop the execution flags out of a command's keyword arguments: the options that were given."""
    out: dict[str, Any] = {}
    for name in ExecutionOptions.names():
        value = values.pop(name, None)
        if value in (None, ()):
            continue
        origin = typing.get_origin(_kind(name))
        if origin is dict:
            value = name_value_pairs(value, _flag(name))
        elif origin is list:
            value = list(value)
        out[name] = value
    return out
