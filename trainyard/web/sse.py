"""Live updates as server-sent events.

One reader per process blocks on the ``ty:events`` stream and fans each event out to every open
``/api/events`` connection, so a hundred open tabs cost one Redis reader. A task page's stream
(``/api/tasks/{id}/stream``) blocks on that task's log and metric streams and on the event
stream at once: lines, points and status changes arrive the moment they are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..queues import keys
from ..queues.events import Event
from ..queues.record import TaskRecord
from . import views
from .deps import ApiError

log = logging.getLogger("trainyard.web")
router = APIRouter(prefix="/api", tags=["live"])

KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
BLOCK_MS = 15_000
QUEUE_MAX = 2000  # events buffered per slow client before it is told to re-read everything


def sse(data: Any, event: str | None = None, event_id: str | None = None) -> str:
    out = ""
    if event_id:
        out += f"id: {event_id}\n"
    if event:
        out += f"event: {event}\n"
    return out + f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict | None] = asyncio.Queue(QUEUE_MAX)
        self.overflowed = False


class EventHub:
    """One blocking reader of the event stream, many subscribers."""

    def __init__(self, client: aioredis.Redis):
        self.client = client
        self.subscribers: set[_Subscriber] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for sub in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def subscribe(self) -> _Subscriber:
        sub = _Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        self.subscribers.discard(sub)

    async def _run(self) -> None:
        cursor = "$"
        while True:
            try:
                if cursor == "$":
                    newest = await self.client.xrevrange(keys.EVENTS, count=1)
                    cursor = newest[0][0].decode() if newest else "0-0"
                reply = await self.client.xread({keys.EVENTS: cursor}, block=BLOCK_MS, count=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: say so once per attempt, try again shortly
                log.warning("event reader: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    cursor = entry_id.decode()
                    self._publish(_event_view(Event.from_fields(entry_id, fields)))

    def _publish(self, event: dict) -> None:
        for sub in list(self.subscribers):
            if sub.overflowed:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed = True


def _event_view(event: Event) -> dict[str, str]:
    return {
        "id": event.id,
        "kind": event.kind,
        "task": event.task_id,
        "status": event.status,
        "prev": event.previous,
        "project": event.project,
        "queue": event.queue,
    }


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/events", summary="Server-sent events: every task, worker and pipeline change, live")
async def events(request: Request) -> StreamingResponse:
    hub: EventHub = request.app.state.hub
    sub = hub.subscribe()

    async def stream() -> AsyncIterator[str]:
        try:
            yield sse({"ok": True}, event="hello")
            while True:
                if sub.overflowed:  # too slow to keep up: tell the page to re-read, start afresh
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    sub.overflowed = False
                    yield sse({}, event="resync")
                try:
                    item = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if item is None:
                    return
                yield sse(item, event="change", event_id=item["id"])
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)


@router.get("/tasks/{task_id}/stream", summary="Server-sent events for one task: log lines, metric points, status")
async def task_stream(task_id: str, request: Request, log_after: str = "0-0", metric_after: str = "0-0"):
    client: aioredis.Redis = request.app.state.aioredis
    raw = await client.get(keys.task(task_id))
    if raw is None:
        raise ApiError(404, "not_found", f"no task with id {task_id!r}")
    resumed = request.headers.get("last-event-id", "")
    if resumed.count("|") == 1:  # the browser reconnected: continue where it was
        log_after, metric_after = resumed.split("|")
    for value in (log_after, metric_after):
        head, _, tail = value.partition("-")
        if not (head.isdigit() and tail.isdigit()):
            raise ApiError(422, "invalid", f"bad stream cursor {value!r} (like 1700000000000-0)")

    async def stream() -> AsyncIterator[str]:
        cursors = {keys.log(task_id): log_after, keys.metrics(task_id): metric_after}
        newest = await client.xrevrange(keys.EVENTS, count=1)
        cursors[keys.EVENTS] = newest[0][0].decode() if newest else "0-0"
        yield sse(views.task_summary(TaskRecord.from_json(raw)), event="task")
        while True:
            reply = await client.xread(cursors, block=BLOCK_MS, count=1000)
            if not reply:
                yield ": keepalive\n\n"
                continue
            changed = False
            for stream_key, entries in reply:
                name = stream_key.decode()
                cursors[name] = entries[-1][0].decode()
                if name == keys.EVENTS:
                    changed = changed or any(f.get(b"task") == task_id.encode() for _, f in entries)
                    continue
                mark = f"{cursors[keys.log(task_id)]}|{cursors[keys.metrics(task_id)]}"
                if name == keys.log(task_id):
                    yield sse({"lines": [_line(i, f) for i, f in entries]}, event="log", event_id=mark)
                else:
                    yield sse({"points": [_point(f) for _, f in entries]}, event="metric", event_id=mark)
            if changed:
                fresh = await client.get(keys.task(task_id))
                if fresh is None:
                    yield sse({"id": task_id}, event="deleted")
                    return
                yield sse(views.task_summary(TaskRecord.from_json(fresh)), event="task")

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)


def _point(fields: dict) -> dict[str, Any]:
    return {
        "title": fields[b"t"].decode(),
        "series": fields[b"s"].decode(),
        "value": float(fields[b"v"]),
        "step": int(fields[b"i"]) if b"i" in fields else None,
    }


def _line(entry_id: bytes, fields: dict) -> dict[str, str]:
    return {
        "id": entry_id.decode(),
        "stream": fields.get(b"s", b"out").decode(),
        "text": fields.get(b"l", b"").decode(errors="replace"),
    }
