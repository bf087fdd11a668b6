"""The event stream: every status change is appended to one Redis stream that waiters block on."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from . import keys

STREAM_MAXLEN = 100_000
RECONCILE_S = 5.0  # a blocked reader re-checks the record at least this often


@dataclass(frozen=True)
class Event:
    """One entry of the stream."""

    id: str
    task_id: str
    kind: str  # created | status | abort_requested | deleted
    status: str
    previous: str
    project: str
    queue: str

    @classmethod
    def from_fields(cls, entry_id: bytes | str, fields: dict) -> Event:
        def get(name: str) -> str:
            value = fields.get(name.encode(), fields.get(name, b""))
            return value.decode() if isinstance(value, bytes) else str(value)

        entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return cls(entry, get("task"), get("kind"), get("status"), get("prev"), get("project"), get("queue"))


def publish(
    pipe: Pipeline, kind: str, task_id: str, status: str, previous: str = "", project: str = "", queue: str = ""
) -> None:
    """Append an event (inside the caller's transaction)."""
    pipe.xadd(
        keys.EVENTS,
        {"task": task_id, "kind": kind, "status": status, "prev": previous, "project": project, "queue": queue},
        maxlen=STREAM_MAXLEN,
        approximate=True,
    )


def last_id(conn: Redis) -> str:
    """The id of the newest event, or ``0-0``: read before a state check so no change is missed."""
    newest = conn.xrevrange(keys.EVENTS, count=1)
    if not newest:
        return "0-0"
    entry = newest[0][0]
    return entry.decode() if isinstance(entry, bytes) else entry


# redis-py 8 gives a client made with ``from_url`` a 5 s socket timeout that its connection_kwargs
# do not show; when none is shown, blocking reads assume that one (a few more wake-ups at worst).
_UNSHOWN_SOCKET_TIMEOUT_S = 5.0


def block_ms(conn: Redis, seconds: float) -> int:
    """A blocking-read time in ms that stays under the connection's socket timeout."""
    timeout = conn.connection_pool.connection_kwargs.get("socket_timeout", _UNSHOWN_SOCKET_TIMEOUT_S)
    if timeout:
        seconds = min(seconds, max(0.05, float(timeout) - 1.0))
    return max(1, int(seconds * 1000))


def deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout
