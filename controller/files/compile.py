"""Turning a checked pipeline file into a run of the pipeline engine: one job = one task.

Each job becomes a step of the engine whose task runs the job runner of the in-task runtime
(``trainyard.runtime.jobrun``, on every task's path), so a job runs the same way in every execution
mode. ``needs`` are the step's parents; the outputs of needed jobs reach the job as engine references
(``${train.outputs.acc}``), resolved with their types when the job is launched.
"""

from __future__ import annotations

from typing import Any

from redis import Redis

from ...queues.errors import InvalidInput
from ...runtime.jobrun import JOB_KEY, NEEDS_KEY, cast_input, duration_s
from ..model import StepSpec
from ..pipeline import Pipeline
from .actions import describe
from .check import order, param_type
from .schema import Param, PipelineFile

CONDITION_CALLBACK = "trainyard.controller.files.conditions:job_condition"
RUNNER = ["python", "-m", "trainyard_runtime.jobrun"]  # the in-task runtime is on every task's path


def typed_values(declared: dict[str, Param], given: dict[str, Any], what: str) -> dict[str, Any]:
    """Given values (strings from a command line are converted) checked against declared params/inputs."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise InvalidInput(f"unknown {what}(s) {', '.join(unknown)} (declared: {', '.join(declared) or 'none'})")
    out = {}
    for name, param in declared.items():
        value = given.get(name, param.default)
        if value is None:
            if param.required:
                raise InvalidInput(f"{what} {name!r} is required")
            out[name] = None
            continue
        try:
            value = cast_input(name, param_type(param), value)
        except ValueError as exc:
            raise InvalidInput(f"{what} {exc}") from None
        if param.options and value not in param.options:
            raise InvalidInput(f"{what} {name}: {value!r} is not one of {param.options}")
        out[name] = value
    return out


def build(
    pf: PipelineFile,
    params: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    connection: Redis | None = None,
    variables: dict[str, Any] | None = None,
) -> Pipeline:
    """The engine pipeline for one run of ``pf`` with these values (nothing is stored yet).

    ``variables`` override the file's ``variables`` for this run (plain values, stored with the run).
    """
    values = typed_values(pf.params, params or {}, "param")
    unknown = sorted(set(variables or {}) - set(pf.variables))
    if unknown:
        known = ", ".join(pf.variables) or "none"
        raise InvalidInput(f"unknown variable(s) {', '.join(unknown)} (declared: {known})")
    run_vars = {**pf.variables, **(variables or {})}
    manual = pf.on.manual.inputs if pf.on.manual else {}
    scheduled = {key for schedule in pf.on.schedule for key in schedule.inputs}  # free-form, set in the file
    extra = {k: v for k, v in (inputs or {}).items() if k not in manual and k in scheduled}
    given = {k: v for k, v in (inputs or {}).items() if k not in extra}
    input_values = {**typed_values(manual, given, "input"), **extra}
    context = {"params": values, "inputs": input_values, "event": dict(event or {}), "vars": run_vars}
    pipe = Pipeline(
        pf.name,
        project=pf.project,
        version=pf.version,
        default_queue=pf.queue or "default",
        abort_on_failure=pf.fail_fast,
        connection=connection,
    )
    pipe.parameters = dict(values)
    for job_id in order(pf):
        pipe._add(_job_step(pf, job_id, context))
    return pipe


def _job_step(pf: PipelineFile, job_id: str, context: dict) -> StepSpec:
    job = pf.jobs[job_id]
    actions = pf.resolved_actions
    steps, used = [], {}
    for i, step in enumerate(job.steps):
        item: dict[str, Any] = {
            "id": step.id,
            "name": step.name,
            "cache": step.cache,
            "tests": step.tests.model_dump() if step.tests else None,
            "label": step.name or step.id or _label(step, i),
            "if": step.if_,
            "env": step.env,
            "timeout": step.timeout,
        }
        if step.run is not None:
            item["run"] = step.run
        else:
            key = describe(step.action)
            if key not in actions:
                raise InvalidInput(f"job {job_id!r}: action {key} was not resolved (load the file with its actions)")
            resolved = actions[key]
            used[resolved.key] = resolved.model_dump(mode="json")
            item["action"], item["inputs"] = resolved.key, step.inputs
        steps.append(item)
    spec = {
        "pipeline": pf.name,
        "job": job_id,
        "context": context,
        "env": {**pf.env, **job.env},
        "if": job.if_,
        "steps": steps,
        "step_ids": [step.id for step in job.steps if step.id],
        "secrets": list(pf.secrets),
        "actions": used,
        "outputs": job.outputs,
    }
    needs = {n: {o: f"${{{n}.outputs.{o}}}" for o in pf.jobs[n].outputs} for n in job.needs}
    template = {
        "type": "custom",
        "tags": ["pipeline-file"],
        "comment": job.name,
        "script": {"command": RUNNER, "python": job.python},
        "container": {"image": job.image},
        "execution": {"gpus": {"count": job.gpus}, "secret_env": {name: name for name in pf.secrets}},
        "configuration": {JOB_KEY: spec},
    }
    return StepSpec(
        name=job_id,
        template=template,
        parents=list(job.needs),
        configuration_overrides={NEEDS_KEY: needs} if needs else {},
        queue=job.queue,
        retries=job.retries,
        time_limit=duration_s(job.timeout),
        mode=job.mode,
        docker_image=job.image,
        requirements=list(job.requirements) or None,
        pre_callback=CONDITION_CALLBACK if job.if_ is not None else None,
    )


def _label(step, index: int) -> str:
    if step.run is not None:
        first = step.run.strip().splitlines()[0] if step.run.strip() else ""
        return f"run: {first[:60]}"
    return f"action: {describe(step.action)}"
