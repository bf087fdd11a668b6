"""ClearML's parameter forms over trainyard's typed parameters.

ClearML stores every value as a string and casts it back to the type of the script's default when
``connect`` reads it. trainyard keeps JSON types; this module gives ClearML code the strings it
expects (``get_parameters``), turns strings written back by ClearML code into the type the task
already had (``set_parameters``), and casts overrides to the default's type in ``connect`` — where
ClearML warns and keeps the default when a value does not cast, this raises one clear line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DEFAULT_SECTION = "General"


def full_key(key: str, section: str = DEFAULT_SECTION) -> str:
    """``lr`` -> ``General/lr``; ``Args/lr`` stays."""
    return key if "/" in key else f"{section}/{key}"


def to_string(value: Any) -> str:
    """ClearML's string form: lists and dicts as JSON, None as ``""``, the rest as ``str()``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value)
    return str(value)


def strings(parameters: Mapping[str, Any]) -> dict[str, str]:
    return {key: to_string(value) for key, value in parameters.items()}


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def like(value: Any, existing: Any) -> Any:
    """A value written by ClearML code (often a string), in the type the parameter had."""
    if not isinstance(value, str) or isinstance(existing, str) or existing is None:
        return value
    try:
        return cast(value, existing, "")
    except ValueError:
        return value


def merge(parameters: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """``Section/name`` keys (bare keys go to ``General/``; later keys win), values typed like ``current``."""
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        full = full_key(str(key))
        out[full] = like(value, current.get(full))
    return out


def cast(value: Any, default: Any, key: str) -> Any:
    """``value`` (a task's override) as the type of the script's ``default``; ValueError names ``key``."""
    if default is None:
        return None if value == "" else value
    kind = type(default)
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("true", "1", "yes", "on"):
                    return True
                if lowered in ("false", "0", "no", "off", ""):
                    return False
                raise ValueError
            if isinstance(value, (int, float)):
                return bool(value)
            raise ValueError
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            number = float(value) if isinstance(value, (float, str)) else None
            if number is None or not number.is_integer():
                raise ValueError
            return int(number)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(default, str):
            return value if isinstance(value, str) else to_string(value)
        if isinstance(default, (list, tuple, dict)):
            parsed = _parse(value) if isinstance(value, str) else value
            if isinstance(default, dict) and not isinstance(parsed, dict):
                raise ValueError
            if isinstance(default, (list, tuple)) and not isinstance(parsed, (list, tuple)):
                raise ValueError
            return kind(parsed)
    except (TypeError, ValueError):
        raise ValueError(
            f"parameter {key}: the task's value {value!r} is not a {kind.__name__} "
            f"like the script's default {default!r}"
        ) from None
    return value
