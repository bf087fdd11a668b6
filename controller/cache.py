"""Step caching: a step whose inputs match a completed task reuses it.

The key covers the code (repository, commit, diff, source, entry point, command, working
folder), the parameters after overrides, the configuration, the container (image included),
the requirements, the mode, and the content hashes of the artifacts its references point at —
so an upstream re-run that produced identical bytes still hits the cache.
"""

from __future__ import annotations

import hashlib
import json

from redis import Redis

from ..queues.backend import documents
from ..queues.errors import TaskNotFound
from ..queues.record import TaskRecord, TaskStatus
from ..queues.store import TaskStore


def cache_key(record: TaskRecord, artifact_hashes: list[str]) -> str:
    s = record.script
    material = {
        "code": [s.repository, s.commit, s.diff, s.source, s.entry_point, s.command, s.working_dir, s.binary, s.python],
        "requirements": sorted(s.requirements),
        "conda": sorted(s.conda_packages),
        "parameters": record.parameters,
        "configuration": record.configuration,
        "container": record.container.model_dump(mode="json"),
        "mode": record.execution.mode.value if record.execution.mode else None,
        "inputs": sorted(artifact_hashes),
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def lookup(conn: Redis, key: str) -> TaskRecord | None:
    """The completed task stored under ``key``, if it is still there and completed."""
    task_id = documents.cached_task(conn, key)
    if task_id is None:
        return None
    try:
        record = TaskStore(conn).get(task_id)
    except TaskNotFound:
        documents.cache_task(conn, key, None)
        return None
    return record if record.status == TaskStatus.COMPLETED else None


def remember(conn: Redis, key: str, task_id: str) -> None:
    documents.cache_task(conn, key, task_id)
