"""Task logs and metric history: capped Redis streams written by workers, read by anyone."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from . import events, keys
from .record import FINAL_STATUSES

LOG_MAXLEN = 10_000  # lines kept in Redis per task; the whole log goes to the artifact store
METRICS_MAXLEN = 100_000
MAX_LINE = 4096  # characters of one line kept in Redis: at most ~40 MiB of log per task there


@dataclass(frozen=True)
class LogLine:
    id: str
    stream: str  # out | err | sys (the worker's own progress lines)
    text: str


def append_lines(pipe: Pipeline, task_id: str, lines: Iterable[tuple[str, str]]) -> None:
    """Queue XADDs for ``(stream, text)`` lines on the caller's pipeline."""
    key = keys.log(task_id)
    for stream, text in lines:
        pipe.xadd(key, {"s": stream, "l": text[:MAX_LINE]}, maxlen=LOG_MAXLEN, approximate=True)


def append_metrics(pipe: Pipeline, task_id: str, points: Iterable[dict]) -> None:
    key = keys.metrics(task_id)
    for p in points:
        fields = {"t": p["title"], "s": p["series"], "v": repr(float(p["value"])), "ts": repr(p.get("ts", 0))}
        if p.get("step") is not None:
            fields["i"] = int(p["step"])
        pipe.xadd(key, fields, maxlen=METRICS_MAXLEN, approximate=True)


def _line(entry_id: bytes, fields: dict) -> LogLine:
    return LogLine(entry_id.decode(), fields.get(b"s", b"out").decode(), fields.get(b"l", b"").decode(errors="replace"))


def read(conn: Redis, task_id: str, after: str = "-", count: int | None = None) -> list[LogLine]:
    """Lines after ``after`` (exclusive when given an id), oldest first."""
    start = "-" if after == "-" else f"({after}"
    return [_line(i, f) for i, f in conn.xrange(keys.log(task_id), min=start, count=count)]


def tail(conn: Redis, task_id: str, count: int) -> list[LogLine]:
    return [_line(i, f) for i, f in reversed(conn.xrevrange(keys.log(task_id), count=count))]


def follow(conn: Redis, task_id: str, block_s: float = 5.0) -> Iterator[LogLine]:
    """All lines so far, then new ones as they come, until the task reaches a final status.

    Blocks on the log stream and the event stream at once: no polling interval.
    """
    from .store import TaskStore

    store = TaskStore(conn)
    events_cursor = conn.xrevrange(keys.EVENTS, count=1)
    ev_cursor = events_cursor[0][0].decode() if events_cursor else "0-0"
    log_cursor = "0-0"
    while True:
        final = store.get(task_id).status in FINAL_STATUSES
        reply = conn.xread({keys.log(task_id): log_cursor}, count=1000)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                log_cursor = entry_id.decode()
                yield _line(entry_id, fields)
        if final and not reply:
            return
        if reply:
            continue
        woke = conn.xread(
            {keys.log(task_id): log_cursor, keys.EVENTS: ev_cursor}, block=events.block_ms(conn, block_s), count=1000
        )
        for stream, entries in woke or []:
            if stream.decode() == keys.EVENTS:
                ev_cursor = entries[-1][0].decode()
                continue
            for entry_id, fields in entries:
                log_cursor = entry_id.decode()
                yield _line(entry_id, fields)


def metric_points(conn: Redis, task_id: str, title: str | None = None) -> list[dict]:
    out = []
    for _, f in conn.xrange(keys.metrics(task_id)):
        point = {
            "title": f[b"t"].decode(),
            "series": f[b"s"].decode(),
            "value": float(f[b"v"]),
            "step": int(f[b"i"]) if b"i" in f else None,
            "ts": float(f[b"ts"]),
        }
        if title is None or point["title"] == title:
            out.append(point)
    return out
