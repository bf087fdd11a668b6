"""A job's ``if``: checked by the pipeline controller when the job is about to start."""

from __future__ import annotations

from typing import Any

from ...queues.errors import InvalidInput
from ...runtime import expr
from ...runtime.jobrun import JOB_KEY, NEEDS_KEY
from ..refs import Resolver


def job_condition(controller: Any, name: str, step: Any) -> bool:
    """Engine pre-callback: False skips the job (and the jobs that need it)."""
    spec = step.template["configuration"][JOB_KEY]
    needs = Resolver(controller.run.parameters, controller._step_record).resolve(
        step.configuration_overrides.get(NEEDS_KEY, {})
    )
    jobs = {job: {"outputs": outputs} for job, outputs in needs.items()}
    context = {**spec["context"], "jobs": jobs, "needs": jobs, "env": {}}
    try:
        return expr.condition(spec.get("if"), context)
    except expr.ExpressionError as exc:
        raise InvalidInput(f"job {name!r}: if: {exc}") from None
