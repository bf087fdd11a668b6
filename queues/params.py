"""Typed parameters: ``Section/name`` keys whose values keep their JSON type."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidInput

DEFAULT_SECTION = "General"
_SECTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def normalize_key(key: str) -> str:
    """``lr`` -> ``General/lr``; ``Args/lr`` stays. Rejects empty or malformed keys."""
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput(f"malformed parameter key {key!r}: it must not be empty")
    section, sep, name = key.partition("/")
    if not sep:
        section, name = DEFAULT_SECTION, key
    if not _SECTION.match(section):
        raise InvalidInput(
            f"malformed parameter key {key!r}: section {section!r} must start with a letter or _ "
            "and hold only letters, digits, '_', '.', '-'"
        )
    if not name.strip() or name != name.strip():
        raise InvalidInput(f"malformed parameter key {key!r}: the name after '/' must not be empty or padded")
    return f"{section}/{name}"


MAX_DEPTH = 100  # nesting of lists and dicts in one value


def _text(key: str, text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"parameter {key}: text {text[:40]!r} is not valid UTF-8 ({exc.reason})") from None
    return text


def check_value(key: str, value: Any, depth: int = 0) -> Any:
    """Accept only JSON values (None, bool, int, float, str, lists and string-keyed dicts)."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"parameter {key}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        return _text(key, value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"parameter {key}: {value} is not a finite number")
        return value
    if isinstance(value, (list, tuple)):
        return [check_value(key, item, depth + 1) for item in value]
    if isinstance(value, Mapping):
        out = {}
        for sub_key, item in value.items():
            if not isinstance(sub_key, str):
                raise InvalidInput(f"parameter {key}: dict keys must be strings, got {sub_key!r}")
            out[_text(key, sub_key)] = check_value(key, item, depth + 1)
        return out
    raise InvalidInput(
        f"parameter {key}: value of type {type(value).__name__} is not JSON (use str, number, bool, None, list or dict)"
    )


SECRET_KEY = "$secret"


def is_secret_ref(value: Any) -> bool:
    """``{"$secret": "name"}``: a parameter whose value a worker fills in from its own secrets."""
    return isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get(SECRET_KEY), str)


def secret_ref(name: str) -> dict[str, str]:
    """The parameter value that stands for the worker-held secret ``name``."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"a secret name must be a non-empty string, got {name!r}")
    return {SECRET_KEY: name}


def check_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise keys and check values of a whole parameter mapping."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        norm = _text("key", normalize_key(key))
        out[norm] = check_value(norm, value)
    return out


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``Section/name=value`` from the command line.

    The value is read as JSON when it is valid JSON (``3`` is an int, ``true`` a bool, ``null``
    None, ``[1,2]`` a list); anything else is a plain string. Quote to force a string: ``'"3"'``.
    """
    key, sep, raw = text.partition("=")
    if not sep:
        raise InvalidInput(f"malformed parameter {text!r}: expected Section/name=value")
    key = normalize_key(key.strip())
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    except RecursionError:
        raise InvalidInput(f"parameter {key}: nested more than {MAX_DEPTH} levels deep") from None
    return key, check_value(key, value)


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """Parse many ``k=v`` items; the whole set is refused if one is malformed."""
    return dict(parse_assignment(item) for item in items)


def section(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The parameters of one section, keyed by their bare names."""
    prefix = f"{name}/"
    return {key[len(prefix) :]: value for key, value in params.items() if key.startswith(prefix)}
