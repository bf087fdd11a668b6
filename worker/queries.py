"""Answering a running task's read-only questions about other tasks (the run folder's ``query`` events).

Tasks never hold Redis credentials; ``Task.get`` / ``Task.get_task`` / ``Task.list`` inside a task
ask their worker instead, which reads the records and writes the answer to ``replies/<id>.json``.
Only reads: a record by id, the newest by project and name, a filtered page (at most ``LIST_MAX``).
"""

from __future__ import annotations

from typing import Any

import redis

from ..queues.errors import TaskNotFound, TrainyardError
from ..queues.store import Query, TaskStore

LIST_MAX = 100  # records in one answer
_FILTERS = ("project", "status", "tag", "queue", "name", "parent")


def answer(store: TaskStore, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """The reply to one query: ``{"ok": true, "value": ...}`` or ``{"ok": false, "reason", "error"}``."""
    try:
        return {"ok": True, "value": _value(store, op, args)}
    except TaskNotFound as exc:
        return _refusal("not_found", str(exc))
    except (TrainyardError, ValueError) as exc:
        return _refusal("invalid", str(exc))
    except (redis.ConnectionError, redis.TimeoutError):
        return _refusal("unavailable", "the worker cannot reach Redis right now; ask again later")


def _refusal(reason: str, error: str) -> dict[str, Any]:
    return {"ok": False, "reason": reason, "error": error.splitlines()[0] if error else reason}


def _text(args: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise ValueError(f"'{key}' must be a non-empty string of at most 1000 characters")
    return value


def _value(store: TaskStore, op: str, args: dict[str, Any]) -> Any:
    unknown = sorted(set(args) - {"task_id", "limit", "offset", *_FILTERS})
    if unknown:
        raise ValueError(f"unknown query argument {unknown[0]!r}")
    if op == "get":
        return store.get(_text(args, "task_id", required=True)).model_dump(mode="json")
    if op == "find":
        project = _text(args, "project") or "default"
        return store.find_by_name(project, _text(args, "name", required=True)).model_dump(mode="json")
    if op == "list":
        limit, offset = args.get("limit", 50), args.get("offset", 0)
        for key, number in (("limit", limit), ("offset", offset)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise ValueError(f"'{key}' must be a whole number >= 0")
        status = args.get("status")
        if status is not None and not (
            isinstance(status, str) or (isinstance(status, list) and all(isinstance(s, str) for s in status))
        ):
            raise ValueError("'status' must be a status or a list of statuses")
        query = Query(status=status, **{key: _text(args, key) for key in _FILTERS if key != "status"})
        records = store.query(query, limit=min(limit, LIST_MAX), offset=offset)
        return [record.model_dump(mode="json") for record in records]
    raise ValueError(f"unknown query {op!r}")
