"""Search-space parameters with ClearML's names, each mapped onto Optuna distributions.

A parameter turns into one or more Optuna distributions (``distributions()``) and turns the values
Optuna sampled back into trial overrides (``decode()``). ``to_list()`` gives the grid for
``GridSearch``. ``to_dict()`` / ``from_dict()`` (a ``type`` key holding the class name, as ClearML's
``parameter_optimization_space``) let the space travel to a controller on a services worker as JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ...queues.errors import InvalidInput
from ...queues.params import check_value, normalize_key

GRID_POINTS = 100  # a uniform range without a step yields this many grid points (as ClearML)
_PRIMITIVE = (type(None), bool, int, float, str)


def _number(name: str, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"parameter {name}: {what} must be a finite number, got {value!r}")
    return value


def _check_range(name: str, low: float, high: float, step: float | None) -> None:
    if low > high:
        raise InvalidInput(f"parameter {name}: the range is inverted (min {low!r} > max {high!r})")
    if step is not None and step <= 0:
        raise InvalidInput(f"parameter {name}: step_size must be positive, got {step!r}")


class Parameter:
    """A named search-space dimension (``Section/name`` as in the task's parameters)."""

    name: str | None

    def distributions(self) -> dict[str, BaseDistribution]:
        raise NotImplementedError

    def decode(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """Trial overrides from the values Optuna sampled."""
        return {self.name: sampled[self.name]}

    def to_list(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def grid_values(self) -> dict[str, list[Any]]:
        """Per distribution name, the values a grid search walks (in Optuna's encoding)."""
        return {self.name: [point[self.name] for point in self.to_list()]}

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Parameter:
        kinds = {cls.__name__: cls for cls in _KINDS}
        kind = data.get("type") if isinstance(data, Mapping) else None
        if kind not in kinds:
            raise InvalidInput(f"unknown parameter type {kind!r} (known: {', '.join(kinds)})")
        fields = {k: v for k, v in data.items() if k != "type"}
        if kind == "ParameterSet":
            fields["parameter_combinations"] = [
                {k: Parameter.from_dict(v) if isinstance(v, Mapping) and "type" in v else v for k, v in combo.items()}
                for combo in fields.get("parameter_combinations", [])
            ]
        try:
            return kinds[kind](**fields)
        except TypeError as exc:
            raise InvalidInput(f"parameter of type {kind}: {exc}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"


class UniformParameterRange(Parameter):
    """A float drawn uniformly from [min_value, max_value], or from its ``step_size`` grid."""

    def __init__(
        self,
        name: str,
        min_value: float,
        max_value: float,
        step_size: float | None = None,
        include_max_value: bool = True,
    ):
        self.name = normalize_key(name)
        self.min_value = _number(self.name, "min_value", min_value)
        self.max_value = _number(self.name, "max_value", max_value)
        self.step_size = None if step_size is None else _number(self.name, "step_size", step_size)
        self.include_max_value = bool(include_max_value)
        _check_range(self.name, self.min_value, self.max_value, self.step_size)
        if self.min_value == self.max_value and not self.include_max_value:
            raise InvalidInput(f"parameter {self.name}: the range is empty")

    def _high(self) -> float:
        if self.step_size is None or self.include_max_value:
            return self.max_value
        return max(self.min_value, self.max_value - self.step_size)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {self.name: FloatDistribution(self.min_value, self._high(), step=self.step_size)}

    def to_list(self) -> list[dict[str, Any]]:
        if self.step_size is None:  # GRID_POINTS values from min to max (max left out if asked)
            if self.max_value == self.min_value:
                return [{self.name: self.min_value}]
            last = GRID_POINTS - 1 if self.include_max_value else GRID_POINTS
            step = (self.max_value - self.min_value) / last
            return [{self.name: self.min_value + i * step} for i in range(GRID_POINTS)]
        count = int(math.floor((self._high() - self.min_value) / self.step_size + 1e-9)) + 1
        return [{self.name: self.min_value + i * self.step_size} for i in range(count)]


class UniformIntegerParameterRange(Parameter):
    """An int from [min_value, max_value] on a ``step_size`` grid."""

    def __init__(self, name: str, min_value: int, max_value: int, step_size: int = 1, include_max_value: bool = True):
        self.name = normalize_key(name)
        for what, value in (("min_value", min_value), ("max_value", max_value), ("step_size", step_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput(f"parameter {self.name}: {what} must be an integer, got {value!r}")
        self.min_value, self.max_value, self.step_size = min_value, max_value, step_size
        self.include_max_value = bool(include_max_value)
        _check_range(self.name, min_value, max_value, step_size)
        if self._high() < min_value:
            raise InvalidInput(f"parameter {self.name}: the range is empty")

    def _high(self) -> int:
        top = self.max_value if self.include_max_value else self.max_value - 1
        return self.min_value + (top - self.min_value) // self.step_size * self.step_size

    def distributions(self) -> dict[str, BaseDistribution]:
        return {self.name: IntDistribution(self.min_value, self._high(), step=self.step_size)}

    def to_list(self) -> list[dict[str, Any]]:
        return [{self.name: v} for v in range(self.min_value, self._high() + 1, self.step_size)]


class LogUniformParameterRange(Parameter):
    """``base ** x`` with x uniform in [min_value, max_value]: the bounds are exponents, as in ClearML
    (``LogUniformParameterRange("Args/lr", -4, -1)`` spans 1e-4 to 1e-1)."""

    def __init__(
        self,
        name: str,
        min_value: float,
        max_value: float,
        base: float = 10,
        step_size: float | None = None,
        include_max_value: bool = True,
    ):
        self.name = normalize_key(name)
        self.min_value = _number(self.name, "min_value", min_value)
        self.max_value = _number(self.name, "max_value", max_value)
        self.base = _number(self.name, "base", base)
        if self.base <= 0 or self.base == 1:
            raise InvalidInput(f"parameter {self.name}: base must be positive and not 1, got {base!r}")
        self.step_size = None if step_size is None else _number(self.name, "step_size", step_size)
        self.include_max_value = bool(include_max_value)
        _check_range(self.name, self.min_value, self.max_value, self.step_size)

    def _exponents(self) -> list[float]:
        inner = UniformParameterRange(self.name, self.min_value, self.max_value, self.step_size, self.include_max_value)
        return [point[self.name] for point in inner.to_list()]

    def distributions(self) -> dict[str, BaseDistribution]:
        if self.step_size is not None:  # a grid of exponents: Optuna has no stepped log distribution
            return {self.name: CategoricalDistribution([self.base**e for e in self._exponents()])}
        return {self.name: FloatDistribution(self.base**self.min_value, self.base**self.max_value, log=True)}

    def to_list(self) -> list[dict[str, Any]]:
        return [{self.name: self.base**e} for e in self._exponents()]


def _choices(name: str, values: Sequence[Any]) -> tuple[list[Any], bool]:
    """Optuna's categorical choices: the values themselves when they are plain, else their JSON."""
    if not values:
        raise InvalidInput(f"parameter {name}: no values to choose from")
    for value in values:
        check_value(name, value)
    plain = all(isinstance(v, _PRIMITIVE) for v in values)
    return (list(values) if plain else [json.dumps(v, sort_keys=True) for v in values]), plain


class DiscreteParameterRange(Parameter):
    """One of ``values`` (any JSON value: numbers, text, booleans, None, lists, dicts)."""

    def __init__(self, name: str, values: Sequence[Any] = ()):
        self.name = normalize_key(name)
        self.values = list(values)
        self._choices, self._plain = _choices(self.name, self.values)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {self.name: CategoricalDistribution(self._choices)}

    def grid_values(self) -> dict[str, list[Any]]:
        return {self.name: list(self._choices)}

    def decode(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        value = sampled[self.name]
        return {self.name: value if self._plain else json.loads(value)}

    def to_list(self) -> list[dict[str, Any]]:
        return [{self.name: v} for v in self.values]


class ParameterSet(Parameter):
    """One whole combination out of ``parameter_combinations``; a value may itself be a Parameter,
    sampled in turn (ClearML's Optuna wrapper refuses ParameterSet; here it works)."""

    def __init__(self, parameter_combinations: Sequence[Mapping[str, Any]] = (), name: str | None = None):
        if not parameter_combinations:
            raise InvalidInput("ParameterSet: no parameter combinations")
        self.name = name
        self.parameter_combinations = [
            {normalize_key(k): v for k, v in dict(combo).items()} for combo in parameter_combinations
        ]
        self._key = f"ParameterSet/{name or 'set'}"

    def distributions(self) -> dict[str, BaseDistribution]:
        out: dict[str, BaseDistribution] = {
            self._key: CategoricalDistribution(list(range(len(self.parameter_combinations))))
        }
        for combo in self.parameter_combinations:
            for value in combo.values():
                if isinstance(value, Parameter):
                    out.update(value.distributions())
        return out

    def grid_values(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {self._key: list(range(len(self.parameter_combinations)))}
        for combo in self.parameter_combinations:
            for value in combo.values():
                if isinstance(value, Parameter):
                    out.update(value.grid_values())
        return out

    def decode(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        combo = self.parameter_combinations[int(sampled[self._key])]
        out: dict[str, Any] = {}
        for key, value in combo.items():
            out.update(value.decode(sampled) if isinstance(value, Parameter) else {key: value})
        return out

    def to_list(self) -> list[dict[str, Any]]:
        out = []
        for combo in self.parameter_combinations:
            grids: list[dict[str, Any]] = [{}]
            for key, value in combo.items():
                points = value.to_list() if isinstance(value, Parameter) else [{key: value}]
                grids = [{**g, **p} for g in grids for p in points]
            out.extend(grids)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "ParameterSet",
            "name": self.name,
            "parameter_combinations": [
                {k: v.to_dict() if isinstance(v, Parameter) else v for k, v in combo.items()}
                for combo in self.parameter_combinations
            ],
        }


_KINDS = (
    UniformParameterRange,
    UniformIntegerParameterRange,
    LogUniformParameterRange,
    DiscreteParameterRange,
    ParameterSet,
)


def space_distributions(space: Sequence[Parameter]) -> dict[str, BaseDistribution]:
    """Every dimension of the space; two parameters with one name are refused."""
    out: dict[str, BaseDistribution] = {}
    for parameter in space:
        for name, dist in parameter.distributions().items():
            if name in out and out[name] != dist:
                raise InvalidInput(f"parameter {name} is defined twice in the search space")
            out[name] = dist
    if not out:
        raise InvalidInput("the search space is empty: give at least one parameter")
    return out


def parameter_names(space: Sequence[Parameter]) -> set[str]:
    """Every override key the space can produce (a ParameterSet's combination keys included)."""
    names: set[str] = set()
    for parameter in space:
        if isinstance(parameter, ParameterSet):
            for combo in parameter.parameter_combinations:
                for key, value in combo.items():
                    names |= parameter_names([value]) if isinstance(value, Parameter) else {key}
        else:
            names.add(parameter.name)
    return names


def decode_all(space: Sequence[Parameter], sampled: Mapping[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for parameter in space:
        overrides.update(parameter.decode(sampled))
    return overrides


def grid_space(space: Sequence[Parameter]) -> dict[str, list[Any]]:
    """Optuna's GridSampler search space: every distribution name with its grid values."""
    out: dict[str, list[Any]] = {}
    for parameter in space:
        out.update(parameter.grid_values())
    return out


def grid_size(space: Sequence[Parameter]) -> int:
    return math.prod(len(values) for values in grid_space(space).values())
