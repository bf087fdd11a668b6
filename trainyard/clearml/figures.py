"""ClearML's automatic figure capture: once ``Task.init`` ran, ``matplotlib.pyplot.show()`` stores
every open figure as a PNG artifact (``image-<title>-plot``, shown on the task's page) before it
shows them. pyplot is patched when it is imported (or at once when it already was)."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any

PYPLOT = "matplotlib.pyplot"
SERIES = "plot"
_shown: dict[str, int] = {}  # title -> figures of that title stored so far (their iteration)


def capture_pyplot() -> None:
    """Patch ``pyplot.show`` now, or when pyplot is first imported."""
    if PYPLOT in sys.modules:
        _patch(sys.modules[PYPLOT])
    elif not any(isinstance(finder, _PyplotFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PyplotFinder())


def _patch(pyplot: ModuleType) -> None:
    original = pyplot.show
    if getattr(original, "_trainyard_capture", False):
        return

    def show(*args: Any, **kwargs: Any) -> Any:
        report_open_figures(pyplot)
        return original(*args, **kwargs)

    show._trainyard_capture = True  # type: ignore[attr-defined]
    show.__doc__ = original.__doc__
    pyplot.show = show


def report_open_figures(pyplot: ModuleType) -> None:
    """Store each open figure of ``pyplot`` with the current task's logger (none: nothing)."""
    from .task import Task

    task = Task.current_task()
    if task is None:
        return
    logger = task.get_logger()
    for number in pyplot.get_fignums():
        figure = pyplot.figure(number)
        title = _title(figure) or f"Figure {number}"
        iteration = _shown.get(title, 0)
        _shown[title] = iteration + 1
        logger.report_matplotlib_figure(title, SERIES, figure, iteration=iteration)


def _title(figure: Any) -> str:
    suptitle = getattr(figure, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        return suptitle.get_text()
    for axes in figure.get_axes():
        if axes.get_title():
            return axes.get_title()
    return ""


class _PyplotFinder(importlib.abc.MetaPathFinder):
    """Finds pyplot with the other finders, and patches it once its module has run."""

    def find_spec(self, name: str, path: Any = None, target: Any = None):
        if name != PYPLOT:
            return None
        sys.meta_path.remove(self)  # once: the real finders find it, and it is patched below
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: Any):
        self.inner = inner

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        _patch(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
