"""The event stream's entries: every status change, worker change and pipeline save is one.

Writing and reading the stream is the backend's (``backend.streams``): publish inside a write's
transaction, the newest id, blocking reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

STREAM_MAXLEN = 100_000
RECONCILE_S = 5.0  # a blocked reader re-checks the record at least this often


@dataclass(frozen=True)
class Event:
    """One entry of the stream."""

    id: str
    task_id: str
    kind: str  # created | status | requeued | abort_requested | deleted | pipeline | worker_*
    status: str
    previous: str
    project: str
    queue: str  # the task's queue ("" for worker and pipeline events)
    worker: str = ""  # the worker a worker_* event is about

    @classmethod
    def from_fields(cls, entry_id: bytes | str, fields: dict) -> Event:
        def get(name: str) -> str:
            value = fields.get(name.encode(), fields.get(name, b""))
            return value.decode() if isinstance(value, bytes) else str(value)

        entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return cls(
            entry,
            get("task"),
            get("kind"),
            get("status"),
            get("prev"),
            get("project"),
            get("queue"),
            get("worker"),
        )


def deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout
