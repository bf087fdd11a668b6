"""A trial's task (a typed clone of the base task) and its objective value from the record."""

from __future__ import annotations

import json
from typing import Any

from ...queues.errors import InvalidInput
from ...queues.params import check_parameters
from ...queues.record import TaskRecord
from .model import Objective, StudyDoc

TAG = "optimization"  # every trial carries it, and "opt:<study id>" (ClearML: "optimization", "opt: <id>")


def study_tag(study_id: str) -> str:
    return f"opt:{study_id}"


def trial_name(base_name: str, overrides: dict[str, Any]) -> str:
    """``"<base name>: k=v k=v"`` with each parameter's short name, as ClearML names its trials."""
    parts = [f"{key.rpartition('/')[2]}={_short(value)}" for key, value in overrides.items()]
    return f"{base_name}: {' '.join(parts)}"[:200]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if not isinstance(value, str) else value


EXECUTION = "Execution/"  # overrides in this section size the trial's task instead of being parameters
EXECUTION_KEYS = {"Execution/gpus": "count", "Execution/gpu_memory_mb": "min_memory_mb"}


def check_execution_names(names: set[str]) -> None:
    """Only the known ``Execution/`` keys may be searched (they size each trial's task)."""
    unknown = sorted(n for n in names if n.startswith(EXECUTION) and n not in EXECUTION_KEYS)
    if unknown:
        raise InvalidInput(
            f"unknown execution setting(s) {', '.join(unknown)} in the search space "
            f"(known: {', '.join(sorted(EXECUTION_KEYS))})"
        )


def trial_record(base: TaskRecord, doc: StudyDoc, task_id: str, number: int, overrides: dict[str, Any]) -> TaskRecord:
    """A new record for trial ``number``: the base task's definition with typed ``overrides``,
    a child of the optimiser's task, tagged with the study. ``Execution/gpus`` and
    ``Execution/gpu_memory_mb`` overrides size the trial (mixed-size trials pack GPUs)."""
    data = base.model_dump(include={"type", "script", "container", "execution", "configuration", "tags"})
    data["execution"].update({"queue": None, "priority": 0})
    for key, field in EXECUTION_KEYS.items():
        if key in overrides:
            data["execution"].setdefault("gpus", {})[field] = overrides[key]
    params = {k: v for k, v in overrides.items() if not k.startswith(EXECUTION)}
    data.update(
        id=task_id,
        name=trial_name(base.name, overrides),
        project=doc.spawn_project or base.project,
        parent=doc.id,
        tags=list(dict.fromkeys([*base.tags, TAG, study_tag(doc.id)])),
        comment="\n".join(f"{k}={_short(v)}" for k, v in overrides.items()) + f"\ntrial {number} of study {doc.id}",
        parameters=check_parameters({**base.parameters, **params}),
    )
    return TaskRecord.model_validate(data)


def objective_value(record: TaskRecord, objective: Objective) -> tuple[float, int | None] | None:
    """(value, iteration) of one objective from the record's metric summary, or None when the
    task never reported it. ``min``/``max``: the last value; ``*_global``: the extreme of all."""
    summary = record.metrics.get(objective.title, {}).get(objective.series)
    if summary is None:
        return None
    value = {"min_global": summary.min, "max_global": summary.max}.get(objective.sign, summary.last)
    return value, summary.step


def reported_series(record: TaskRecord) -> list[str]:
    return sorted(f"{t}/{s}" for t, series in record.metrics.items() for s in series)


def check_objectives(base: TaskRecord, objectives: list[Objective]) -> None:
    """A base task that has run and reported metrics must have reported every objective."""
    if not base.metrics:
        return
    for objective in objectives:
        if objective_value(base, objective) is None:
            raise InvalidInput(
                f"objective metric {objective.label!r} was never reported by base task {base.id} "
                f"(it reported: {', '.join(reported_series(base))})"
            )
