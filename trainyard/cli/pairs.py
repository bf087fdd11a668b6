"""``NAME=VALUE`` options (``--env``, ``--param``, ``--input`` ...) read into a dict of strings."""

from __future__ import annotations

from ..queues.errors import InvalidInput


def name_value_pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    """``("a=1", "b=x=y")`` -> ``{"a": "1", "b": "x=y"}``; an item without ``=`` or a name is refused."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"{option} {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out
