"""The registry of named queues: create, check, limit, describe, list what waits, move, forget.

A queue is RQ's list ``rq:queue:<name>`` of task ids, kept sorted by priority (higher first,
equal priorities first in, first out). Non-zero priorities live in a small hash beside the list.
Moves keep the order sorted by giving the moved task a priority between its new neighbours.
Pushes and removals belong to task transitions (``lifecycle.TABLE``), not to this registry.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from redis import Redis

from .backend import queues as queue_lists
from .backend import records
from .errors import InvalidInput, QueueNotEmpty, QueueNotFound

QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class QueueInfo:
    name: str
    length: int
    created: float | None = None
    description: str = ""
    max_running: int = 0  # 0: no limit
    running: int = 0  # claimed or running now
    oldest_wait_s: float | None = None  # how long the head has waited


@dataclass(frozen=True)
class QueuedEntry:
    position: int
    task_id: str
    priority: int


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise InvalidInput(
            f"invalid queue name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


class QueueRegistry:
    """The named queues: their registration, limits, facts and waiting tasks."""

    def __init__(self, connection: Redis):
        self.conn = connection

    # -- registry ------------------------------------------------------------------------
    def create(self, name: str, description: str = "", exist_ok: bool = False, max_running: int = 0) -> QueueInfo:
        check_queue_name(name)
        if max_running < 0:
            raise InvalidInput(f"max running must be 0 (no limit) or more, got {max_running}")
        meta = json.dumps({"created": time.time(), "description": description, "max_running": max_running})
        if not queue_lists.register(self.conn, name, meta) and not exist_ok:
            raise InvalidInput(f"queue {name!r} already exists")
        return self.info(name)

    def exists(self, name: str) -> bool:
        return queue_lists.is_registered(self.conn, name)

    def require(self, name: str) -> None:
        check_queue_name(name)
        if not self.exists(name):
            raise QueueNotFound(f"no queue named {name!r} (create it with: trainyard queue create {name})")

    def set_limit(self, name: str, max_running: int) -> QueueInfo:
        """At most ``max_running`` tasks of this queue run at once, over all workers (0: no limit)."""
        if max_running < 0:
            raise InvalidInput(f"max running must be 0 (no limit) or more, got {max_running}")
        self.require(name)
        data = json.loads(queue_lists.meta(self.conn, name))
        data["max_running"] = max_running
        queue_lists.set_meta(self.conn, name, json.dumps(data))
        return self.info(name)

    def info(self, name: str) -> QueueInfo:
        if not queue_lists.is_registered(self.conn, name):
            raise QueueNotFound(f"no queue named {name!r} (create it with: trainyard queue create {name})")
        return self._infos([name])[0]

    def list(self) -> list[QueueInfo]:
        return self._infos(queue_lists.names(self.conn))

    def _infos(self, names: list[str]) -> list[QueueInfo]:
        """Length, limit, running count and the head's wait for each queue, in two round trips."""
        if not names:
            return []
        found = queue_lists.stats(self.conn, names)
        heads = [h.decode() for _, _, _, h in found if h]
        queued_at = {}
        if heads:
            for head, raw in zip(heads, records.records_json(self.conn, heads)):
                if raw is not None:
                    queued_at[head] = json.loads(raw).get("queued_at")
        now, out = time.time(), []
        for i, name in enumerate(names):
            meta, length, running, head = found[i]
            data = json.loads(meta) if meta else {}
            since = queued_at.get(head.decode()) if head else None
            out.append(
                QueueInfo(
                    name,
                    length,
                    data.get("created"),
                    data.get("description", ""),
                    int(data.get("max_running") or 0),
                    running,
                    now - since if since else None,
                )
            )
        return out

    def entries(self, name: str, offset: int = 0, limit: int = 50) -> list[QueuedEntry]:
        """Queued task ids in the order workers will take them, with their priorities."""
        self.require(name)
        if offset < 0 or limit < 0:
            raise InvalidInput("limit and offset must not be negative")
        if limit == 0:
            return []
        return [
            QueuedEntry(offset + n, tid, prio)
            for n, (tid, prio) in enumerate(queue_lists.waiting(self.conn, name, offset, limit))
        ]

    def drop_registration(self, name: str) -> None:
        queue_lists.unregister(self.conn, name)

    def check_deletable(self, name: str, force: bool) -> list[str]:
        """Ids still queued; raises QueueNotEmpty unless ``force``."""
        self.require(name)
        ids = queue_lists.all_waiting(self.conn, name)
        if ids and not force:
            raise QueueNotEmpty(
                f"queue {name!r} still holds {len(ids)} task(s): dequeue them or delete with --force "
                "(forced deletion puts them back to draft)"
            )
        return ids

    def move(self, name: str, task_id: str, where: str, index: int = 0) -> int:
        """Move a queued task to ``top``, ``bottom`` or ``index``; returns its new position."""
        if where not in ("top", "bottom", "index"):
            raise InvalidInput(f"unknown move target {where!r} (top, bottom or index)")
        if where == "index" and index < 0:
            raise InvalidInput(f"position must be 0 or more, got {index}")
        pos = queue_lists.move(self.conn, name, task_id, where, index)
        if pos < 0:
            raise InvalidInput(f"task {task_id} is not waiting in queue {name!r}")
        return int(pos)
