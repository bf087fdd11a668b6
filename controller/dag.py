"""Checking a pipeline's graph: known parents, no cycles, references that point somewhere."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from ..queues.errors import InvalidInput
from .model import StepSpec
from .refs import Reference, find_references


def implicit_parents(step: StepSpec) -> set[str]:
    """Steps this step's references point at (``${prep.artifacts.x.url}`` makes ``prep`` a parent)."""
    found = set()
    for ref in find_references([step.parameter_override, step.kwargs, step.configuration_overrides]):
        if ref.step != "pipeline":
            found.add(ref.step)
    return found


def check(steps: dict[str, StepSpec], parameters: dict) -> list[str]:
    """Validate the graph and return the steps in a runnable order; InvalidInput names the problem."""
    for name, step in steps.items():
        for parent in step.parents:
            if parent not in steps:
                raise InvalidInput(f"step {name!r}: unknown parent {parent!r}")
        for ref in find_references([step.parameter_override, step.kwargs, step.configuration_overrides]):
            _check_reference(name, ref, steps, parameters)
    graph = {name: set(step.parents) | implicit_parents(step) for name, step in steps.items()}
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = exc.args[1]
        raise InvalidInput(f"the pipeline has a cycle: {' -> '.join(cycle)}") from None


def _check_reference(owner: str, ref: Reference, steps: dict[str, StepSpec], parameters: dict) -> None:
    if ref.step == "pipeline":
        if ref.path[0] not in parameters:
            raise InvalidInput(f"step {owner!r}: {ref.text} names an unknown pipeline parameter {ref.path[0]!r}")
        return
    if ref.step == owner:
        raise InvalidInput(f"step {owner!r}: {ref.text} refers to the step itself")
    target = steps.get(ref.step)
    if target is None:
        raise InvalidInput(f"step {owner!r}: {ref.text} refers to an unknown step {ref.step!r}")
    head = ref.path[0]
    if head in ("id", "parameters", "artifacts", "outputs", "status"):
        return
    if target.function is not None and head in target.returns:
        return
    known = "id, parameters.<Section/name>, artifacts.<name>.<field>, outputs.<name>"
    if target.function is not None:
        known += ", or a return value: " + (", ".join(target.returns) or "(none declared)")
    raise InvalidInput(f"step {owner!r}: {ref.text}: step {ref.step!r} has no {head!r} ({known})")


def descendants(steps: dict[str, StepSpec], roots: set[str]) -> set[str]:
    """``roots`` and every step that depends on one of them, directly or not."""
    children: dict[str, set[str]] = {name: set() for name in steps}
    for name, step in steps.items():
        for parent in set(step.parents) | implicit_parents(step):
            children.setdefault(parent, set()).add(name)
    out, todo = set(), list(roots)
    while todo:
        current = todo.pop()
        if current in out:
            continue
        out.add(current)
        todo.extend(children.get(current, ()))
    return out


def all_parents(step: StepSpec) -> set[str]:
    return set(step.parents) | implicit_parents(step)
