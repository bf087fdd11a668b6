"""DataTorch's pipeline files read as written: what they spell differently is mapped onto trainyard's file.

Applied to the plain data of every file before the schema check (the line of each value is kept):

* ``triggers:`` is ``on:``; its ``manual`` trigger's ``form`` (a JSON Schema) gives the manual inputs,
  its ``role`` is left to trainyard's token roles.
* A trigger that only DataTorch's web app can fire (``annotatorButton``) refuses the file with one
  line naming it, before anything else is checked or fetched.
* In a DataTorch file a step's bare-number ``timeout`` is minutes (DataTorch's schema), not seconds.

The rest of DataTorch's syntax is understood everywhere: ``${{ input.x }}``, ``.output.``, step
names with spaces in ``steps.<name>.output.<key>`` (``expr.py``), ``${{ variable.x }}`` and steps
addressed by ``name`` (``jobrun.py``), ``datatorch/<name>`` actions and ``@latest`` (``actions.py``).
"""

from __future__ import annotations

from typing import Any

from .errors import FileError, field_path
from .loader import Lines, line_of

SCHEMA_HOST = "datatorch.io"
ACTION_OWNER = "datatorch/"
PUBLISHED_OWNER = "datatorch-actions/"
# triggers that only DataTorch's web app can fire: refused with one line naming what they need
WEB_ONLY_TRIGGERS = {
    "annotatorButton": "a button in DataTorch's web annotator, which starts the run with the clicked file "
    "and points; trainyard has no annotator (run it with 'trainyard pipeline run' or an 'on: manual' trigger)",
}
_FORM_TYPES = {"string", "number", "integer", "boolean", "array", "object"}


def published_name(name: str) -> str:
    """``datatorch/add`` -> ``datatorch-actions/add``: where DataTorch publishes its own actions."""
    if name.lower().startswith(ACTION_OWNER):
        return PUBLISHED_OWNER + name[len(ACTION_OWNER) :]
    return name


def is_datatorch(data: dict[str, Any]) -> bool:
    """A file written for DataTorch: a DataTorch ``$schema``, ``triggers:``, or a ``datatorch/`` action."""
    if SCHEMA_HOST in str(data.get("$schema") or "") or "triggers" in data:
        return True
    jobs = data.get("jobs")
    for job in jobs.values() if isinstance(jobs, dict) else ():
        steps = job.get("steps") if isinstance(job, dict) else None
        for step in steps if isinstance(steps, list) else ():
            action = step.get("action") if isinstance(step, dict) else None
            name = action.get("name") if isinstance(action, dict) else action
            if isinstance(name, str) and name.lower().startswith(ACTION_OWNER):
                return True
    return False


def translate(data: dict[str, Any], lines: Lines, filename: str) -> tuple[list[FileError], list[FileError]]:
    """Rewrite DataTorch's spellings in ``data`` (in place; ``lines`` follows). Returns (refusals, errors):
    refusals name what needs DataTorch's web service (the file cannot run anywhere but there)."""
    refusals: list[FileError] = []
    errors: list[FileError] = []

    def problem(out: list, path: tuple, message: str) -> None:
        out.append(FileError(file=filename, line=line_of(lines, path), field=field_path(path), message=message))

    if "triggers" in data:
        triggers = data.pop("triggers")
        if "on" in data:
            problem(errors, ("triggers",), "use 'on' or DataTorch's 'triggers', not both")
        elif isinstance(triggers, dict):
            for name, need in WEB_ONLY_TRIGGERS.items():
                if name in triggers:
                    problem(refusals, ("triggers", name), f"DataTorch's {name} trigger needs {need}")
            data["on"] = _triggers(triggers, lines)
        else:
            data["on"] = triggers
        _move(lines, ("triggers",), ("on",))
    if is_datatorch(data) or refusals:
        _timeouts_in_minutes(data)
    return refusals, errors


def _triggers(triggers: dict[str, Any], lines: Lines) -> dict[str, Any]:
    out = {k: v for k, v in triggers.items() if k not in WEB_ONLY_TRIGGERS}
    manual = out.get("manual")
    if isinstance(manual, dict) and ("form" in manual or "role" in manual):
        manual = dict(manual)
        manual.pop("role", None)  # who may run it: trainyard's tokens carry roles ('trigger' may fire)
        form = manual.pop("form", None)
        if isinstance(form, dict):
            manual["inputs"] = _form_inputs(form)
            _move(lines, ("triggers", "manual", "form", "properties"), ("triggers", "manual", "inputs"))
        out["manual"] = manual
    return out


def _form_inputs(form: dict[str, Any]) -> dict[str, Any]:
    """A manual trigger's JSON Schema form as trainyard inputs (type, default, description, enum, required)."""
    required = set(form.get("required") or [])
    inputs = {}
    for name, spec in (form.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        item: dict[str, Any] = {"required": name in required}
        if spec.get("type") in _FORM_TYPES:
            item["type"] = spec["type"]
        for source, target in (("default", "default"), ("description", "description"), ("enum", "options")):
            if source in spec:
                item[target] = spec[source]
        inputs[name] = item
    return inputs


def _timeouts_in_minutes(data: dict[str, Any]) -> None:
    jobs = data.get("jobs")
    for job in jobs.values() if isinstance(jobs, dict) else ():
        steps = job.get("steps") if isinstance(job, dict) else None
        for step in steps if isinstance(steps, list) else ():
            timeout = step.get("timeout") if isinstance(step, dict) else None
            if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
                step["timeout"] = f"{timeout}m"


def _move(lines: Lines, old: tuple, new: tuple) -> None:
    for path in [p for p in lines if p[: len(old)] == old]:
        lines.setdefault(new + path[len(old) :], lines[path])
