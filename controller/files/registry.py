"""Registered pipeline files (stored in Redis by project and name) and starting their runs.

* ``submit(pf, params, conn)``: register (or update) the file, then start a run on the workers
  (its controller on the services queue); returns the run id.
* ``trigger(name, inputs, conn)``: start a run of a registered file by name (a manual trigger).
* ``run_here(pf, params, inputs)``: run it in this process, its jobs on an in-process worker.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis

from ...queues import keys
from ...queues.backend import documents
from ...queues.connection import resolve
from ...queues.errors import InvalidInput, PipelineNotFound
from ..model import PipelineRun
from .actions import ResolvedAction, refresh_latest
from .check import load_text
from .compile import build
from .schema import PipelineFile

REGISTRY = keys.PIPEFILES
SERVICES_QUEUE = "services"


def _field(project: str, name: str) -> str:
    return f"{project}/{name}"


def register(pf: PipelineFile, conn: Redis | None = None) -> dict[str, Any]:
    """Store (or replace) the file under its project and name; returns the stored entry."""
    conn = resolve(conn)
    entry = {
        "name": pf.name,
        "project": pf.project,
        "filename": pf.filename,
        "text": pf.source_text,
        "actions": {k: a.model_dump(mode="json") for k, a in pf.resolved_actions.items()},
        "updated": time.time(),
    }
    documents.put(conn, "pipefiles", _field(pf.project, pf.name), json.dumps(entry))
    return entry


def entries(conn: Redis | None = None) -> list[dict[str, Any]]:
    raw = documents.all_docs(resolve(conn), "pipefiles")
    return sorted((json.loads(v) for v in raw), key=lambda e: (e["project"], e["name"]))


def find(name: str, project: str | None = None, conn: Redis | None = None) -> dict[str, Any]:
    """A registered file by name (``project/name`` or a name unique across projects)."""
    conn = resolve(conn)
    if project is None and "/" in name:
        project, _, name = name.rpartition("/")
    if project is not None:
        raw = documents.get(conn, "pipefiles", _field(project, name))
        if raw is None:
            raise PipelineNotFound(f"no registered pipeline {name!r} in project {project!r}")
        return json.loads(raw)
    found = [e for e in entries(conn) if e["name"] == name]
    if not found:
        raise PipelineNotFound(f"no registered pipeline named {name!r} (trainyard pipeline submit FILE registers one)")
    if len(found) > 1:
        projects = ", ".join(e["project"] for e in found)
        raise InvalidInput(f"pipeline {name!r} is registered in several projects ({projects}): use PROJECT/NAME")
    return found[0]


def unregister(name: str, project: str | None = None, conn: Redis | None = None) -> None:
    conn = resolve(conn)
    entry = find(name, project, conn)
    documents.drop(conn, "pipefiles", _field(entry["project"], entry["name"]))


def load_entry(entry: dict[str, Any]) -> PipelineFile:
    """A registered file as a PipelineFile (its actions as they were resolved when registered)."""
    pf = load_text(entry["text"], entry["filename"], resolve_actions=False)
    pf._actions = {k: ResolvedAction.model_validate(v) for k, v in entry["actions"].items()}
    return pf


def start(
    pf: PipelineFile,
    params: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    conn: Redis | None = None,
    queue: str = SERVICES_QUEUE,
    variables: dict[str, Any] | None = None,
) -> str:
    """Start a run on the workers: its controller on ``queue``; returns the run id.

    ``@latest`` actions are fetched again first and the run pinned to their commit now (DataTorch
    fetches them for every run), not to the one seen when the file was registered.
    """
    try:
        pf._actions = {k: refresh_latest(a) for k, a in pf.resolved_actions.items()}
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return build(pf, params, inputs, event, resolve(conn), variables).start(queue=queue)


def submit(
    pf: PipelineFile,
    params: dict[str, Any] | None = None,
    conn: Redis | None = None,
    queue: str = SERVICES_QUEUE,
    variables: dict[str, Any] | None = None,
) -> str:
    """Register (or update) the file, then start a run on the workers; returns the run id.

    The values are checked before anything is stored: bad params register nothing.
    """
    conn = resolve(conn)
    pipe = build(pf, params, None, None, conn, variables)
    pipe.validate()
    register(pf, conn)
    return pipe.start(queue=queue)


def trigger(
    name: str,
    inputs: dict[str, Any] | None = None,
    conn: Redis | None = None,
    project: str | None = None,
    params: dict[str, Any] | None = None,
    queue: str = SERVICES_QUEUE,
    variables: dict[str, Any] | None = None,
) -> str:
    """Fire the manual trigger of a registered pipeline with ``inputs``; returns the run id."""
    conn = resolve(conn)
    pf = load_entry(find(name, project, conn))
    if pf.on.manual is None:
        raise InvalidInput(f"pipeline {pf.name!r} has no manual trigger (add 'on: {{manual: ...}}')")
    return start(pf, params, inputs, None, conn, queue, variables)


def run_here(
    pf: PipelineFile,
    params: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    conn: Redis | None = None,
    variables: dict[str, Any] | None = None,
) -> PipelineRun:
    """Run the file in this process, its jobs on an in-process worker; returns the finished run."""
    return build(pf, params, inputs, None, resolve(conn), variables).start_locally(run_steps_locally=True)
