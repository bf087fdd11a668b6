"""Loading and checking a pipeline file: syntax, schema, graph, references, actions and their inputs.

Every problem found is reported with its file, line and field (all of them, not just the first).
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ...runtime import expr
from ...runtime.jobrun import cast_input
from . import datatorch
from .actions import ResolvedAction, describe, resolve
from .errors import FileError, PipelineFileError, field_path
from .loader import Lines, line_of, parse
from .schema import Param, PipelineFile

_TYPE_ERRORS = {
    "string_type",
    "dict_type",
    "model_type",
    "model_attributes_type",
    "list_type",
    "int_type",
    "float_type",
    "bool_type",
    "literal_error",
    "int_parsing",
    "float_parsing",
    "bool_parsing",
}


_BRANCH_TAGS = {"str", "int", "float", "bool", "list", "dict"}  # pydantic's names of a union's plain branches


class Checker:
    def __init__(self, filename: str, lines: Lines):
        self.filename = filename
        self.lines = lines
        self.errors: list[FileError] = []

    def add(self, path: tuple, message: str) -> None:
        self.errors.append(
            FileError(file=self.filename, line=line_of(self.lines, path), field=field_path(path), message=message)
        )


def load_text(
    text: str, filename: str = "<editor>", base_dir: Path | None = None, resolve_actions: bool = True
) -> PipelineFile:
    """A checked PipelineFile; raises PipelineFileError listing every problem."""
    data, lines = parse(text, filename)
    checker = Checker(filename, lines)
    if not isinstance(data, dict):
        checker.add((), "a pipeline file must be a mapping with at least 'name' and 'jobs'")
        raise PipelineFileError(checker.errors)
    if "name" not in data and filename != "<editor>":
        data["name"] = Path(filename).stem  # as DataTorch names a file without one
    refusals, problems = datatorch.translate(data, lines, filename)
    if refusals:  # it needs DataTorch's web service: nothing else matters
        raise PipelineFileError(refusals)
    checker.errors.extend(problems)
    try:
        model = PipelineFile.model_validate(data)
    except ValidationError as exc:
        _schema_errors(checker, data, exc)
        raise PipelineFileError(checker.errors) from None
    if checker.errors:
        raise PipelineFileError(checker.errors)
    _check_params(checker, model)
    _check_graph(checker, model)
    actions: dict[str, ResolvedAction] = {}
    if resolve_actions:
        actions = _resolve_actions(checker, model, base_dir)
    _check_references(checker, model, actions)
    if checker.errors:
        raise PipelineFileError(checker.errors)
    model._text = text
    model._filename = filename
    model._base_dir = str(base_dir) if base_dir else None
    model._actions = actions
    return model


def validate_text(
    text: str, filename: str = "<editor>", base_dir: Path | None = None, resolve_actions: bool = True
) -> list[FileError]:
    """Every problem in ``text`` ([] when it is a valid pipeline file); nothing is stored or run.

    ``resolve_actions=False`` skips fetching actions (and checking their inputs): quick, for editors.
    """
    try:
        load_text(text, filename, base_dir, resolve_actions)
    except PipelineFileError as exc:
        return exc.errors
    return []


def load_file(path: str | Path) -> PipelineFile:
    path = Path(path)
    if path.suffix not in (".yml", ".yaml", ".json"):
        raise PipelineFileError([FileError(file=str(path), message="a pipeline file ends in .yml, .yaml or .json")])
    try:
        text = path.read_text()
    except OSError as exc:
        raise PipelineFileError([FileError(file=str(path), message=f"cannot read: {exc.strerror}")]) from None
    return load_text(text, str(path), path.resolve().parent)


# -- schema ---------------------------------------------------------------------------------------


def _schema_errors(checker: Checker, data: Any, exc: ValidationError) -> None:
    found: list[tuple[tuple, str, str]] = []
    for error in exc.errors():
        path = _data_path(data, error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = f"unknown key {path[-1]!r}"
        elif error["type"] == "missing":
            message = f"missing required key {path[-1]!r}"
        elif error["type"] == "string_pattern_mismatch" and "[key]" in error["loc"]:
            message = f"bad id {path[-1]!r}: start with a letter or _, then letters, digits, - or _ (64 at most)"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        found.append((path, error["type"], message))
    seen = set()
    for path, kind, message in found:
        if kind in _TYPE_ERRORS and any(p[: len(path)] == path and k not in _TYPE_ERRORS for p, k, _ in found):
            continue  # the other branch of a union explains it better
        if (path, message) not in seen:
            seen.add((path, message))
            checker.add(path, message)


def _data_path(data: Any, loc: tuple) -> tuple:
    """A pydantic location with union branch names (``ActionObject``, ``str``...) left out."""
    out: list = []
    current = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(current, dict):
            if part in current:
                current = current[part]
                out.append(part)
            elif part == "[key]" or last:
                if part != "[key]" and part not in _BRANCH_TAGS:  # ``action.str``: the union's other branch
                    out.append(part)
            elif part in ("if_", "schema_") and part.rstrip("_") in current:
                out.append(part.rstrip("_"))
                current = current[part.rstrip("_")]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
            out.append(part)
    return tuple(out)


# -- params ---------------------------------------------------------------------------------------


def param_type(param: Param) -> str:
    if param.type:
        return param.type
    value = param.default
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def _check_params(checker: Checker, model: PipelineFile) -> None:
    groups = [("params", model.params)]
    if model.on.manual:
        groups.append(("on.manual.inputs", model.on.manual.inputs))
    for prefix, params in groups:
        for name, param in params.items():
            path = (*prefix.split("."), name)
            if param.default is not None and not expr.TEMPLATE.search(str(param.default)):
                try:
                    cast_input(name, param_type(param), param.default)
                except ValueError as exc:
                    checker.add((*path, "default"), str(exc))
    for i, schedule in enumerate(model.on.schedule):
        for key in schedule.params:
            if key not in model.params:
                checker.add(("on", "schedule", i, "params", key), f"unknown param {key!r}")
    for i, trigger in enumerate(model.on.task):
        for key in trigger.params:
            if key not in model.params:
                checker.add(("on", "task", i, "params", key), f"unknown param {key!r}")


# -- the graph ------------------------------------------------------------------------------------


def _check_graph(checker: Checker, model: PipelineFile) -> None:
    for job_id, job in model.jobs.items():
        if job_id == "pipeline":
            checker.add(("jobs", job_id), "'pipeline' is reserved (it names the run's params in references)")
        for i, need in enumerate(job.needs):
            if need == job_id:
                checker.add(("jobs", job_id, "needs", i), f"job {job_id!r} cannot need itself")
            elif need not in model.jobs:
                checker.add(("jobs", job_id, "needs", i), f"unknown job {need!r} (jobs: {', '.join(model.jobs)})")
        seen: dict[str, int] = {}
        for i, step in enumerate(job.steps):
            if step.id:
                if step.id in seen:
                    checker.add(("jobs", job_id, "steps", i, "id"), f"step id {step.id!r} is used twice in the job")
                seen[step.id] = i
    graph = {j: {n for n in job.needs if n in model.jobs and n != j} for j, job in model.jobs.items()}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = exc.args[1]
        checker.add(("jobs", cycle[0], "needs"), f"the jobs' needs form a cycle: {' -> '.join(cycle)}")


def order(model: PipelineFile) -> list[str]:
    return list(TopologicalSorter({j: set(job.needs) for j, job in model.jobs.items()}).static_order())


# -- actions --------------------------------------------------------------------------------------


def _resolve_actions(checker: Checker, model: PipelineFile, base_dir: Path | None) -> dict[str, ResolvedAction]:
    out: dict[str, ResolvedAction] = {}
    for job_id, job in model.jobs.items():
        for i, step in enumerate(job.steps):
            if step.action is None:
                continue
            path = ("jobs", job_id, "steps", i, "action")
            key = describe(step.action)
            if key not in out:
                try:
                    out[key] = resolve(step.action, base_dir)
                except PipelineFileError as exc:
                    checker.add(path, f"action {key}: its action file is invalid")
                    checker.errors.extend(exc.errors)
                    continue
                except ValueError as exc:
                    checker.add(path, str(exc))
                    continue
            _check_inputs(checker, ("jobs", job_id, "steps", i, "inputs"), out[key], step.inputs)
    return out


def _check_inputs(checker: Checker, path: tuple, action: ResolvedAction, given: dict) -> None:
    declared = action.definition.get("inputs") or {}
    for name in given:
        if name not in declared:
            checker.add(
                (*path, name),
                f"unknown input {name!r} of action {action.display} (declared: {', '.join(declared) or 'none'})",
            )
    for name, spec in declared.items():
        value = given.get(name)
        if value is None:
            if spec.get("required") and spec.get("default") is None:
                checker.add(path, f"missing required input {name!r} of action {action.display}")
            continue
        if isinstance(value, str) and expr.TEMPLATE.search(value):
            continue  # checked when the step runs, once the value is known
        try:
            cast_input(name, spec.get("type") or "string", value)
        except ValueError as exc:
            checker.add((*path, name), f"wrong type: {exc}")
            continue
        if spec.get("options") and value not in spec["options"]:
            checker.add((*path, name), f"{value!r} is not one of {spec['options']}")


# -- references -----------------------------------------------------------------------------------


def _check_references(checker: Checker, model: PipelineFile, actions: dict[str, ResolvedAction]) -> None:
    inputs = set(model.on.manual.inputs) if model.on.manual else set()
    for schedule in model.on.schedule:
        inputs |= set(schedule.inputs)
    base = {"params": set(model.params), "inputs": inputs, "env": set(model.env), "jobs": {}, "steps": None}
    base.update(vars=set(model.variables), secrets=set(model.secrets), variable=None)
    _refs(checker, ("env",), model.env, base)
    for job_id, job in model.jobs.items():
        jobs = {n: set(model.jobs[n].outputs) for n in job.needs if n in model.jobs}
        scope = {**base, "jobs": jobs, "env": base["env"] | set(job.env)}
        _refs(checker, ("jobs", job_id, "if"), job.if_, {**scope, "env": set()})
        _refs(checker, ("jobs", job_id, "env"), job.env, scope)
        steps: dict[str, set | None] = {}
        ids = {step.id for step in job.steps if step.id}
        earlier: set | None = set()  # every earlier step's outputs (None: one of them may print any)
        for i, step in enumerate(job.steps):
            path = ("jobs", job_id, "steps", i)
            step_scope = {**scope, "steps": dict(steps), "variable": earlier}
            _refs(checker, (*path, "if"), step.if_, step_scope)
            _refs(checker, (*path, "env"), step.env, step_scope)
            with_env = {**step_scope, "env": scope["env"] | set(step.env)}
            _refs(checker, (*path, "run"), step.run, with_env)
            _refs(checker, (*path, "inputs"), step.inputs, with_env)
            declared = None
            resolved = actions.get(describe(step.action)) if step.action is not None else None
            if resolved is not None and not resolved.file.startswith("action-datatorch"):
                declared = set(resolved.definition.get("outputs") or {})  # DataTorch actions print any
            for key in (step.id, step.name):
                if key and (key == step.id or key not in ids):
                    steps[key] = declared
            earlier = None if earlier is None or declared is None else earlier | declared
        _refs(checker, ("jobs", job_id, "outputs"), job.outputs, {**scope, "steps": steps, "variable": earlier})


def _refs(checker: Checker, path: tuple, value: Any, scope: dict) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _refs(checker, (*path, key), item, scope)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _refs(checker, (*path, i), item, scope)
        return
    if not isinstance(value, str):
        return
    texts = list(expr.expressions(value))
    if path[-1] == "if" and not texts:
        texts = [value]
    for text in texts:
        try:
            node = expr.parse(text)
        except expr.ExpressionError as exc:
            checker.add(path, str(exc))
            continue
        for ref in expr.references(node):
            problem = _ref_problem(ref, scope)
            if problem:
                checker.add(path, f"${{{{ {'.'.join(str(p) for p in ref)} }}}}: {problem}")


_WHAT = {"params": "param", "inputs": "input", "env": "env variable", "vars": "variable", "secrets": "secret"}


def _ref_problem(ref: tuple, scope: dict) -> str | None:
    head = ref[0]
    if head == "needs":
        head = "jobs"
    if head not in expr.NAMESPACES:
        known = "params., inputs., vars., secrets., steps., variable., jobs., env. or event."
        return f"unknown name {head!r} (use {known})"
    if head == "event":
        return None
    if len(ref) < 2:
        return f"{head} needs a name ({head}.<name>)"
    name = str(ref[1])
    if head in ("params", "inputs", "env", "vars", "secrets"):
        if name not in scope[head]:
            known = ", ".join(sorted(scope[head])) or "none"
            return f"unknown {_WHAT[head]} {name!r} (known: {known})"
        return None
    if head == "variable":
        if scope["steps"] is None:
            return "variable. (earlier steps' outputs) can only be used inside a job's steps and outputs"
        if scope["variable"] is not None and name not in scope["variable"]:
            known = ", ".join(sorted(scope["variable"])) or "none"
            return f"no earlier step of the job gives output {name!r} (outputs so far: {known})"
        return None
    if head == "jobs":
        if name not in scope["jobs"]:
            return f"job {name!r} is not in this job's needs (needs: {', '.join(scope['jobs']) or 'none'})"
        if len(ref) < 4 or ref[2] != "outputs":
            return "expected jobs.<job>.outputs.<name>"
        if str(ref[3]) not in scope["jobs"][name]:
            return f"job {name!r} declares no output {ref[3]!r} (outputs: {', '.join(scope['jobs'][name]) or 'none'})"
        return None
    steps = scope["steps"]
    if steps is None:
        return "steps can only be referred to inside a job's steps and outputs"
    if name not in steps:
        return f"unknown step {name!r} (steps before this one with an id or name: {', '.join(steps) or 'none'})"
    if len(ref) < 3 or ref[2] not in ("outputs", "outcome"):
        return "expected steps.<id>.outputs.<name> or steps.<id>.outcome"
    if ref[2] == "outputs":
        if len(ref) < 4:
            return "expected steps.<id>.outputs.<name>"
        declared = steps[name]
        if declared is not None and str(ref[3]) not in declared:
            known = ", ".join(sorted(declared)) or "none"
            return f"step {name!r}'s action declares no output {ref[3]!r} (outputs: {known})"
    return None
