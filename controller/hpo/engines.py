"""The search strategies (ClearML's names) and the Optuna samplers and pruners they build.

Samplers and pruners travel to a controller as JSON specs (``{"name": "TPESampler", "kwargs": {...}}``)
and are built with every argument passed through; an unknown name or argument is refused before
anything is enqueued (ClearML's Optuna wrapper drops them silently: clearml#1630).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from ...queues.errors import InvalidInput
from .parameters import Parameter, grid_space

SAMPLER_ALIASES = {
    "tpe": "TPESampler",
    "cmaes": "CmaEsSampler",
    "cma-es": "CmaEsSampler",
    "gp": "GPSampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "qmc": "QMCSampler",
    "nsga2": "NSGAIISampler",
    "nsga3": "NSGAIIISampler",
    "bruteforce": "BruteForceSampler",
}
PRUNER_ALIASES = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successivehalving": "SuccessiveHalvingPruner",
    "sha": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "patient": "PatientPruner",
    "wilcoxon": "WilcoxonPruner",
    "nop": "NopPruner",
    "none": "NopPruner",
}


_EXAMPLE = {"sampler": "TPESampler", "pruner": "MedianPruner"}


class SearchStrategy:
    """Base of the strategies; ``default_sampler`` / ``default_pruner`` are specs or None."""

    default_sampler: str = "TPESampler"
    default_pruner: str = "NopPruner"


class GridSearch(SearchStrategy):
    """Every point of the grid (each parameter's ``to_list()``), no early stopping."""

    default_sampler = "GridSampler"


class RandomSearch(SearchStrategy):
    """Independent random draws, no early stopping."""

    default_sampler = "RandomSampler"


class OptimizerOptuna(SearchStrategy):
    """Optuna's TPE with a median pruner unless ``optuna_sampler`` / ``optuna_pruner`` say otherwise."""

    default_sampler = "TPESampler"
    default_pruner = "MedianPruner"


STRATEGIES = {cls.__name__: cls for cls in (GridSearch, RandomSearch, OptimizerOptuna)}
STRATEGY_ALIASES = {"grid": "GridSearch", "random": "RandomSearch", "optuna": "OptimizerOptuna"}


def strategy_name(optimizer_class: Any) -> str:
    """``GridSearch`` / ``"grid"`` / ``"OptimizerOptuna"`` ... -> the strategy's class name."""
    name = optimizer_class.__name__ if isinstance(optimizer_class, type) else optimizer_class
    if isinstance(name, str):
        name = STRATEGY_ALIASES.get(name.lower(), name)
        if name in STRATEGIES:
            return name
    raise InvalidInput(
        f"unknown optimizer_class {optimizer_class!r} "
        f"(known: {', '.join(STRATEGIES)}, or {', '.join(STRATEGY_ALIASES)})"
    )


def spec(value: Any, kwargs: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    """A sampler or pruner given by name (+ kwargs) or as a spec dict -> ``{"name", "kwargs"}``."""
    if value is None:
        return None if not kwargs else {"name": None, "kwargs": dict(kwargs)}
    if isinstance(value, Mapping):
        return {"name": value.get("name"), "kwargs": {**dict(value.get("kwargs") or {}), **dict(kwargs or {})}}
    if isinstance(value, str):
        return {"name": value, "kwargs": dict(kwargs or {})}
    raise InvalidInput(
        f"optuna_{what} must be given by name (e.g. optuna_{what}='{_EXAMPLE[what]}', "
        f"optuna_{what}_kwargs={{...}}) so that a controller on a services worker can build it; got {value!r}"
    )


def _resolve(kind: str, name: str, aliases: dict[str, str], module: Any, base: type) -> type:
    full = aliases.get(name.lower().replace("_", ""), name)
    cls = getattr(module, full, None)
    if not (isinstance(cls, type) and issubclass(cls, base)) or full.startswith("Base"):
        known = sorted(n for n in dir(module) if n.endswith(kind.title()) and not n.startswith("Base"))
        raise InvalidInput(f"unknown {kind} {name!r} (known: {', '.join(known)})")
    return cls


def _build(cls: type, kwargs: Mapping[str, Any], kind: str, extra: Mapping[str, Any] | None = None) -> Any:
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params or k == "self"]
    if unknown and not takes_any:
        allowed = ", ".join(n for n in params if n != "self")
        raise InvalidInput(f"{kind} {cls.__name__}: unknown argument(s) {', '.join(unknown)} (it takes: {allowed})")
    try:
        return cls(**{**dict(extra or {}), **dict(kwargs)})
    except (TypeError, ValueError, ImportError) as exc:
        raise InvalidInput(f"{kind} {cls.__name__}: {exc}") from None


def build_sampler(
    sampler: Mapping[str, Any] | None, strategy: str, space: Sequence[Parameter]
) -> optuna.samplers.BaseSampler:
    name = (sampler or {}).get("name") or STRATEGIES[strategy].default_sampler
    kwargs = dict((sampler or {}).get("kwargs") or {})
    cls = _resolve("sampler", name, SAMPLER_ALIASES, optuna.samplers, optuna.samplers.BaseSampler)
    extra = {}
    if cls is optuna.samplers.GridSampler and "search_space" not in kwargs:
        extra["search_space"] = grid_space(space)
    if cls is optuna.samplers.PartialFixedSampler:
        raise InvalidInput("sampler PartialFixedSampler wraps another sampler: not supported by name")
    return _build(cls, kwargs, "sampler", extra)


def build_pruner(pruner: Mapping[str, Any] | None, strategy: str) -> optuna.pruners.BasePruner:
    name = (pruner or {}).get("name") or STRATEGIES[strategy].default_pruner
    kwargs = dict((pruner or {}).get("kwargs") or {})
    cls = _resolve("pruner", name, PRUNER_ALIASES, optuna.pruners, optuna.pruners.BasePruner)
    if "wrapped_pruner" in kwargs:  # PatientPruner: the wrapped one is a spec too
        inner = kwargs["wrapped_pruner"]
        kwargs["wrapped_pruner"] = build_pruner(spec(inner, None, "pruner"), strategy) if inner is not None else None
    return _build(cls, kwargs, "pruner")


def grid_points(sampler: optuna.samplers.BaseSampler) -> int | None:
    """How many points a GridSampler has (it stops the study after them), None for other samplers.
    Optuna keeps the grid private: read defensively."""
    if not isinstance(sampler, optuna.samplers.GridSampler):
        return None
    grids = getattr(sampler, "_all_grids", None)
    return len(grids) if isinstance(grids, list) else None
