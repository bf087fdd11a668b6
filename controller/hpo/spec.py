"""Studies written as text: ``--param`` strings on the command line and YAML/JSON study files.

A parameter is ``NAME=KIND:ARGS``:

    Args/lr=loguniform:1e-4:1e-1      a float, log-uniform between the two values
    Args/dropout=uniform:0:0.5[:0.1]  a float, uniform (on a step grid when a step is given)
    Args/layers=int:1:8[:1]           an int
    Args/batch=choice:16,32,64        one of the values (each read as JSON when it parses: 16 is an int)

A study file holds the same as the options (``trainyard hpo start study.yaml``)::

    base_task: vision/train            # an id, or project/name
    objective: {title: loss, series: val, sign: min}
    parameters:
      Args/lr: loguniform:1e-4:1e-1
      Args/batch: {type: DiscreteParameterRange, values: [16, 32, 64]}   # ClearML's serialised form
    optimizer: OptimizerOptuna
    sampler: {name: TPESampler, kwargs: {seed: 1}}
    pruner: median
    queue: trials
    concurrency: 4
    total: 30
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ...queues.errors import InvalidInput
from ..files.loader import parse
from .parameters import (
    DiscreteParameterRange,
    LogUniformParameterRange,
    Parameter,
    UniformIntegerParameterRange,
    UniformParameterRange,
)

KINDS = ("uniform", "loguniform", "int", "choice")
FILE_KEYS = {
    "base_task",
    "objective",
    "parameters",
    "optimizer",
    "sampler",
    "pruner",
    "queue",
    "concurrency",
    "total",
    "time_limit_per_job",
    "min_iteration_per_job",
    "max_iteration_per_job",
    "optimization_time_limit",
    "compute_time_limit",
    "save_top_k",
    "name",
    "project",
    "spawn_project",
    "controller_queue",
}


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _numbers(name: str, kind: str, args: list[str], count: tuple[int, int]) -> list[float]:
    if not count[0] <= len(args) <= count[1]:
        raise InvalidInput(
            f"--param {name}: {kind} takes {' or '.join(str(n) for n in range(count[0], count[1] + 1))} "
            f"numbers, got {len(args)}"
        )
    out = []
    for arg in args:
        value = _json(arg)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(f"--param {name}: {arg!r} is not a number")
        out.append(value)
    return out


def parse_param(text: str) -> Parameter:
    """``Section/name=kind:args`` -> the Parameter (one clear line on a bad spec)."""
    name, sep, rest = text.partition("=")
    kind, colon, args_text = rest.partition(":")
    if not sep or not name.strip() or not colon or kind not in KINDS:
        raise InvalidInput(f"--param {text!r}: expected NAME=KIND:ARGS with KIND one of {', '.join(KINDS)}")
    name = name.strip()
    if kind == "choice":
        return DiscreteParameterRange(name, [_json(v) for v in args_text.split(",")] if args_text else [])
    args = args_text.split(":")
    if kind == "int":
        numbers = _numbers(name, kind, args, (2, 3))
        if not all(isinstance(n, int) for n in numbers):
            raise InvalidInput(f"--param {name}: int bounds and step must be integers")
        return UniformIntegerParameterRange(name, *numbers)
    if kind == "uniform":
        return UniformParameterRange(name, *_numbers(name, kind, args, (2, 3)))
    low, high = _numbers(name, kind, args, (2, 2))
    if low <= 0 or high <= 0:
        raise InvalidInput(f"--param {name}: loguniform bounds must be positive, got {low!r} and {high!r}")
    return LogUniformParameterRange(name, math.log10(low), math.log10(high))


def load_file(path: str | Path) -> dict[str, Any]:
    """A study file -> the checked settings (keys of ``FILE_KEYS``, parameters as Parameter objects)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read it ({exc.strerror or exc})") from None
    data, _ = parse(text, str(path))
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: a study file is a mapping of settings")
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise InvalidInput(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(FILE_KEYS))})")
    for key in ("base_task", "objective", "parameters"):
        if key not in data:
            raise InvalidInput(f"{path}: {key} is required")
    params = data["parameters"]
    if not isinstance(params, dict) or not params:
        raise InvalidInput(f"{path}: parameters must map parameter names to ranges")
    space = []
    for name, value in params.items():
        if isinstance(value, dict):
            space.append(Parameter.from_dict({**value, "name": name} if value.get("type") != "ParameterSet" else value))
        else:
            space.append(parse_param(f"{name}={value}"))
    data["parameters"] = space
    objectives = data["objective"] if isinstance(data["objective"], list) else [data["objective"]]
    for objective in objectives:
        if not isinstance(objective, dict) or not {"title", "series"} <= set(objective):
            raise InvalidInput(f"{path}: objective needs title and series (and sign: min, max, min_global, max_global)")
    data["objective"] = objectives
    return data


def parse_objective(text: str) -> tuple[str, str]:
    """``title/series`` -> (title, series)."""
    title, sep, series = text.partition("/")
    if not sep or not title or not series:
        raise InvalidInput(f"--objective {text!r}: expected TITLE/SERIES, e.g. loss/val")
    return title, series
