"""Streams: the event stream (publish, newest id, blocking reads), task logs and metric points,
and the trigger firings stream. The web app's async reads are here too."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from .. import keys
from ..events import STREAM_MAXLEN, Event

LOG_MAXLEN = 10_000  # lines kept in Redis per task; the whole log goes to the artifact store
METRICS_MAXLEN = 100_000
MAX_LINE = 4096  # characters of one line kept in Redis: at most ~40 MiB of log per task there
FIRES_MAXLEN = 10_000

# redis-py 8 gives a client made with ``from_url`` a 5 s socket timeout that its connection_kwargs
# do not show; when none is shown, blocking reads assume that one (a few more wake-ups at worst).
_UNSHOWN_SOCKET_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LogLine:
    id: str
    stream: str  # out | err | sys (the worker's own progress lines)
    text: str


# -- events ----------------------------------------------------------------------------------
def publish(
    pipe: Pipeline, kind: str, task_id: str, status: str, previous: str = "", project: str = "", queue: str = ""
) -> None:
    """Append a task event (inside the caller's transaction)."""
    pipe.xadd(
        keys.EVENTS,
        {"task": task_id, "kind": kind, "status": status, "prev": previous, "project": project, "queue": queue},
        maxlen=STREAM_MAXLEN,
        approximate=True,
    )


def publish_worker(pipe: Pipeline, kind: str, worker: str, status: str) -> None:
    """Append a worker event (``worker_up``, ``worker_state``, ``worker_command``) naming the worker."""
    pipe.xadd(
        keys.EVENTS,
        {"task": "", "kind": kind, "status": status, "prev": "", "project": "", "queue": "", "worker": worker},
        maxlen=STREAM_MAXLEN,
        approximate=True,
    )


def announce(conn: Redis, kind: str, task_id: str, status: str, queue: str = "") -> None:
    """Publish one task event on its own (a reaper telling idle workers a task is back)."""
    with conn.pipeline(transaction=False) as pipe:
        publish(pipe, kind, task_id, status, status, "", queue)
        pipe.execute()


def last_event_id(conn: Redis) -> str:
    """The id of the newest event, or ``0-0``: read before a state check so no change is missed."""
    newest = conn.xrevrange(keys.EVENTS, count=1)
    if not newest:
        return "0-0"
    entry = newest[0][0]
    return entry.decode() if isinstance(entry, bytes) else entry


def block_ms(conn: Redis, seconds: float) -> int:
    """A blocking-read time in ms that stays under the connection's socket timeout."""
    timeout = conn.connection_pool.connection_kwargs.get("socket_timeout", _UNSHOWN_SOCKET_TIMEOUT_S)
    if timeout:
        seconds = min(seconds, max(0.05, float(timeout) - 1.0))
    return max(1, int(seconds * 1000))


def follow_events(conn: Redis, cursor: str, block_s: float, count: int = 1000) -> list[Event]:
    """Events after ``cursor``, waiting up to ``block_s`` for the first (kept under the socket
    timeout); empty when none came."""
    reply = conn.xread({keys.EVENTS: cursor}, block=block_ms(conn, block_s), count=count)
    return [Event.from_fields(i, f) for _, entries in reply or [] for i, f in entries]


def follow_events_and_metrics(
    conn: Redis, cursor: str, metric_cursors: dict[str, str], block_s: float, count: int = 1000
) -> tuple[list[Event], list[tuple[str, dict]]]:
    """One blocking read of the event stream after ``cursor`` and of the metric streams of the tasks
    in ``metric_cursors`` (task id -> position, moved past what came): the events and the
    ``(task id, point)`` pairs, each oldest first; both empty when nothing came within ``block_s``."""
    wanted = {keys.EVENTS: cursor, **{keys.metrics(t): c for t, c in metric_cursors.items()}}
    tasks = {keys.metrics(t): t for t in metric_cursors}
    reply = conn.xread(wanted, block=block_ms(conn, block_s), count=count)
    found: list[Event] = []
    points: list[tuple[str, dict]] = []
    for stream, entries in reply or []:
        name = stream.decode() if isinstance(stream, bytes) else stream
        if name == keys.EVENTS:
            found += [Event.from_fields(i, f) for i, f in entries]
            continue
        task_id = tasks[name]
        metric_cursors[task_id] = entries[-1][0].decode()
        points += [(task_id, _point(f)) for _, f in entries]
    return found, points


# -- logs and metrics --------------------------------------------------------------------------
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


def append_report(conn: Redis, task_id: str, lines: list[tuple[str, str]], points: list[dict]) -> None:
    """A worker's batch of log lines and metric points, in one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        append_lines(pipe, task_id, lines)
        append_metrics(pipe, task_id, points)
        pipe.execute()


def _line(entry_id: bytes, fields: dict) -> LogLine:
    return LogLine(entry_id.decode(), fields.get(b"s", b"out").decode(), fields.get(b"l", b"").decode(errors="replace"))


def _point(fields: dict) -> dict:
    return {
        "title": fields[b"t"].decode(),
        "series": fields[b"s"].decode(),
        "value": float(fields[b"v"]),
        "step": int(fields[b"i"]) if b"i" in fields else None,
        "ts": float(fields.get(b"ts", 0)),
    }


def read_log(conn: Redis, task_id: str, after: str = "-", count: int | None = None) -> list[LogLine]:
    """Lines after ``after`` (exclusive when given an id), oldest first."""
    start = "-" if after == "-" else f"({after}"
    return [_line(i, f) for i, f in conn.xrange(keys.log(task_id), min=start, count=count)]


def tail_log(conn: Redis, task_id: str, count: int) -> list[LogLine]:
    return [_line(i, f) for i, f in reversed(conn.xrevrange(keys.log(task_id), count=count))]


def log_after(conn: Redis, task_id: str, cursor: str, count: int = 1000) -> list[LogLine]:
    """Lines after ``cursor`` without waiting."""
    reply = conn.xread({keys.log(task_id): cursor}, count=count)
    return [_line(i, f) for _, entries in reply or [] for i, f in entries]


def wait_log(conn: Redis, task_id: str, cursor: str, event_cursor: str, block_s: float) -> tuple[list[LogLine], str]:
    """Block on the task's log and the event stream at once; new lines and the new event cursor."""
    reply = conn.xread(
        {keys.log(task_id): cursor, keys.EVENTS: event_cursor}, block=block_ms(conn, block_s), count=1000
    )
    lines: list[LogLine] = []
    for stream, entries in reply or []:
        if stream.decode() == keys.EVENTS:
            event_cursor = entries[-1][0].decode()
        else:
            lines += [_line(i, f) for i, f in entries]
    return lines, event_cursor


def metric_points(conn: Redis, task_id: str) -> list[dict]:
    """Every metric point of the task, oldest first."""
    return [_point(f) for _, f in conn.xrange(keys.metrics(task_id))]


def newest_metric_id(conn: Redis, task_id: str) -> str | None:
    newest = conn.xrevrange(keys.metrics(task_id), count=1)
    return newest[0][0].decode() if newest else None


# -- trigger firings -----------------------------------------------------------------------------
def record_firing(conn: Redis, trigger_id: str, entry_json: str) -> None:
    """One firing: appended to the firings stream and kept as the trigger's last."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.xadd(keys.TRIGGER_FIRES, {"data": entry_json}, maxlen=FIRES_MAXLEN, approximate=True)
        pipe.hset(keys.TRIGGER_LAST, trigger_id, entry_json)
        pipe.execute()


def firings(conn: Redis, after: str = "0-0") -> list[tuple[str, bytes]]:
    """``(entry id, JSON)`` of the firings after ``after``, oldest first."""
    start = f"({after}" if after != "0-0" else "-"
    return [(i.decode(), f[b"data"]) for i, f in conn.xrange(keys.TRIGGER_FIRES, min=start)]


def last_firing(conn: Redis, trigger_id: str) -> str | None:
    raw = conn.hget(keys.TRIGGER_LAST, trigger_id)
    return raw.decode() if raw is not None else None


# -- async reads for the web app (redis.asyncio client) -------------------------------------------
async def async_last_event_id(client) -> str:
    newest = await client.xrevrange(keys.EVENTS, count=1)
    return newest[0][0].decode() if newest else "0-0"


async def async_follow_events(client, cursor: str, block_ms_: int, count: int = 1000) -> list[Event]:
    reply = await client.xread({keys.EVENTS: cursor}, block=block_ms_, count=count)
    return [Event.from_fields(i, f) for _, entries in reply or [] for i, f in entries]


async def async_follow_task(client, task_id: str, cursors: dict[str, str], block_ms_: int) -> list[tuple]:
    """Block on the task's log and metric streams and the event stream at once (one XREAD).

    ``cursors`` (``log``, ``metrics``, ``events``) move past what came. Returns, in the order
    Redis gave them, ``("log", lines, mark)``, ``("metric", points, mark)`` and ``("events",
    events, mark)``, where ``mark`` is ``"<log cursor>|<metric cursor>"`` after that chunk.
    Empty when nothing came."""
    streams = {keys.log(task_id): cursors["log"], keys.metrics(task_id): cursors["metrics"]}
    streams[keys.EVENTS] = cursors["events"]
    reply = await client.xread(streams, block=block_ms_, count=1000)
    chunks: list[tuple] = []
    for stream_key, entries in reply or []:
        name = stream_key.decode()
        last = entries[-1][0].decode()
        if name == keys.EVENTS:
            cursors["events"] = last
            chunks.append(("events", [Event.from_fields(i, f) for i, f in entries], ""))
            continue
        if name == keys.log(task_id):
            cursors["log"] = last
            items, kind = [_line(i, f) for i, f in entries], "log"
        else:
            cursors["metrics"] = last
            items, kind = [_point(f) for _, f in entries], "metric"
        chunks.append((kind, items, f"{cursors['log']}|{cursors['metrics']}"))
    return chunks


async def async_record_json(client, task_id: str) -> bytes | None:
    """A task record's JSON, or None."""
    return await client.get(keys.task(task_id))


def last_activity(conn: Redis, task_ids: list[str]) -> list[list[str]]:
    """Per task, the ids of its newest log line and newest metric point (those it has)."""
    with conn.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.xrevrange(keys.log(task_id), count=1)
            pipe.xrevrange(keys.metrics(task_id), count=1)
        replies = pipe.execute()
    return [[reply[0][0].decode() for reply in replies[2 * i : 2 * i + 2] if reply] for i in range(len(task_ids))]
