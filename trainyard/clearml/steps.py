"""What runs a ClearML function step inside its task (the ``runner`` of trainyard's function steps).

Arguments come from the task's ``kwargs/<name>`` parameters (JSON values) and ``kwargs_artifacts/<name>``
(the URL of another step's artifact, read back in its safe format); every return value is stored as
an artifact in a safe format, and JSON values also as outputs (so ``${step.<name>}`` works in
trainyard's own references). A return value that only pickle can store stops the step with one line,
unless pickle was asked for (``TRAINYARD_CLEARML_PICKLE=1`` in the step's environment).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..runtime import funcstep
from . import artifacts as codec
from .errors import UnsupportedCall

ARTIFACT_SECTION = "kwargs_artifacts"


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def load_arguments(parameters: dict[str, Any], section: str) -> dict[str, Any]:
    """The function's arguments: JSON values, and artifacts of other steps read back."""
    from .storage import StorageManager

    kwargs = funcstep.arguments(parameters, section)
    for key, url in funcstep.arguments(parameters, ARTIFACT_SECTION).items():
        kwargs[key] = codec.read(Path(StorageManager.get_local_copy(url, extract_archive=False)))
    return kwargs


def return_pairs(function: str, returns: Sequence[str], result: Any) -> list[tuple[str, Any]]:
    """(name, value) per declared return name (ClearML: one name takes the whole result)."""
    if not returns:
        return []
    if len(returns) == 1:
        return [(returns[0], result)]
    if not isinstance(result, (tuple, list)) or len(result) != len(returns):
        got = f"{len(result)} values" if isinstance(result, (tuple, list)) else f"one {type(result).__name__}"
        raise ValueError(
            f"step function {function}() returned {got}, but declared {len(returns)} ({', '.join(returns)})"
        )
    return list(zip(returns, result))


def run_step(task: Any, func: Callable[..., Any], section: str, returns: Sequence[str]) -> None:
    """Call ``func`` with the task's arguments; store its return values. Exits with one line when
    the call or a return value does not fit."""
    from .task import Task

    try:
        kwargs = load_arguments(task.get_parameters(), section)
    except UnsupportedCall as exc:
        sys.exit(f"trainyard: step function {func.__name__}(): {exc}")
    problem = funcstep.check_call(func, kwargs)
    if problem:
        sys.exit("trainyard: " + problem)
    result = func(**kwargs)
    try:
        pairs = return_pairs(func.__name__, returns, result)
    except ValueError as exc:
        sys.exit(f"trainyard: {exc}")
    handle = Task(context=task)
    for name, value in pairs:
        try:
            handle.upload_artifact(name, value)
        except UnsupportedCall as exc:
            sys.exit(f"trainyard: step function {func.__name__}(): {exc}")
        if _is_json(value):
            task.set_output(name, value)
