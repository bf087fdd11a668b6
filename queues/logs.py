"""Task logs and metric history: capped Redis streams written by workers, read by anyone.

The streams themselves are the backend's (``backend.streams``); this module is the readers' API.
"""

from __future__ import annotations

from collections.abc import Iterator

from redis import Redis

from .backend import streams
from .backend.streams import LOG_MAXLEN, MAX_LINE, METRICS_MAXLEN, LogLine, append_lines, append_metrics
from .record import FINAL_STATUSES

__all__ = [
    "LOG_MAXLEN",
    "MAX_LINE",
    "METRICS_MAXLEN",
    "LogLine",
    "append_lines",
    "append_metrics",
    "follow",
    "metric_points",
    "read",
    "tail",
]


def read(conn: Redis, task_id: str, after: str = "-", count: int | None = None) -> list[LogLine]:
    """Lines after ``after`` (exclusive when given an id), oldest first."""
    return streams.read_log(conn, task_id, after, count)


def tail(conn: Redis, task_id: str, count: int) -> list[LogLine]:
    return streams.tail_log(conn, task_id, count)


def follow(conn: Redis, task_id: str, block_s: float = 5.0) -> Iterator[LogLine]:
    """All lines so far, then new ones as they come, until the task reaches a final status.

    Blocks on the log stream and the event stream at once: no polling interval.
    """
    from .store import TaskStore

    store = TaskStore(conn)
    ev_cursor = streams.last_event_id(conn)
    log_cursor = "0-0"
    while True:
        final = store.get(task_id).status in FINAL_STATUSES
        lines = streams.log_after(conn, task_id, log_cursor)
        for line in lines:
            log_cursor = line.id
            yield line
        if final and not lines:
            return
        if lines:
            continue
        lines, ev_cursor = streams.wait_log(conn, task_id, log_cursor, ev_cursor, block_s)
        for line in lines:
            log_cursor = line.id
            yield line


def metric_points(conn: Redis, task_id: str, title: str | None = None) -> list[dict]:
    return [p for p in streams.metric_points(conn, task_id) if title is None or p["title"] == title]
