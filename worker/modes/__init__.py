"""Execution modes as plugins, keyed by the record's ``execution.mode``.

Each module here (``local.py``, ``venv.py``, ``conda.py``, ``docker.py``) defines ``MODE``: an object
with a ``name``, ``prepare(job) -> LaunchSpec`` and ``launch(spec, log) -> Launched`` (base.py).
The registry is every module of this package that defines ``MODE``: adding a mode is adding a
module (its name also goes into ``queues.record.ExecutionMode``, the records' vocabulary, which a
test keeps equal to this registry).
"""

from __future__ import annotations

import importlib
import pkgutil

from ..launch import PrepareError
from .base import Job, Launched, Mode, ModeSettings

__all__ = ["Job", "Launched", "Mode", "ModeSettings", "get", "names"]


def _discover() -> dict[str, Mode]:
    found: dict[str, Mode] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        mode = getattr(module, "MODE", None)
        if mode is not None:
            found[mode.name] = mode
    return found


_MODES = _discover()


def names() -> tuple[str, ...]:
    """The modes this worker has, in ExecutionMode order (then any others)."""
    from ...queues.record import ExecutionMode

    known = [m.value for m in ExecutionMode if m.value in _MODES]
    return tuple(known + sorted(set(_MODES) - set(known)))


def get(name: str) -> Mode:
    """The mode called ``name``; PrepareError naming the modes there are otherwise."""
    try:
        return _MODES[name]
    except KeyError:
        raise PrepareError(f"unknown execution mode {name!r} (one of {', '.join(names())})") from None
