"""Live updates as server-sent events.

One reader per process blocks on the ``ty:events`` stream and fans each event out to every open
``/api/events`` connection, so a hundred open tabs cost one Redis reader. A task page's stream
(``/api/tasks/{id}/stream``) blocks on that task's log and metric streams and on the event
stream at once: lines, points and status changes arrive the moment they are written.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..queues.backend import streams
from ..queues.events import Event
from ..queues.record import TaskRecord
from . import views
from .deps import ApiError

log = logging.getLogger("trainyard.web")
router = APIRouter(prefix="/api", tags=["live"])

KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
BLOCK_MS = 15_000
TASK_BLOCK_MS = 1_000  # a task page's blocking read: how soon its stream sees the server stopping
STOP_WAIT_S = 5.0  # at most this long for the event reader to end once cancelled
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
    """One blocking reader of the event stream, many subscribers.

    ``closing`` is set the moment the server is asked to stop (``close``, from its signal
    handler): every live stream ends then, so the connections close within uvicorn's graceful
    shutdown instead of being cancelled after it, and ``stop`` never waits without bound.
    """

    def __init__(self, client: aioredis.Redis):
        self.client = client
        self.subscribers: set[_Subscriber] = set()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closing = asyncio.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    def close(self) -> None:
        """End every live stream now (safe to call from a signal handler or another thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.closing.set)

    async def next(self, sub: _Subscriber, timeout: float) -> dict | None:
        """The subscriber's next event; None once the hub is closing; TimeoutError when idle."""
        if self.closing.is_set():
            return None
        getter = asyncio.ensure_future(sub.queue.get())
        closer = asyncio.ensure_future(self.closing.wait())
        try:
            done, _ = await asyncio.wait({getter, closer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (getter, closer):
                if not waiter.done():
                    waiter.cancel()
        if getter in done:
            return getter.result()
        if closer in done:
            return None
        raise asyncio.TimeoutError

    async def stop(self) -> None:
        """Close the streams and end the reader; a reader that does not end is left behind
        (logged), never waited on for ever: a cancelled blocking read on a busy connection
        may not return."""
        self.closing.set()
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
            if not done:
                log.warning("event reader did not end within %.0fs of being cancelled; leaving it", STOP_WAIT_S)
            elif not self._task.cancelled() and self._task.exception() is not None:
                log.warning("event reader ended with %r", self._task.exception())

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
                    cursor = await streams.async_last_event_id(self.client)
                got = await streams.async_follow_events(self.client, cursor, BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: say so once per attempt, try again shortly
                log.warning("event reader: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for event in got:
                cursor = event.id
                self._publish(_event_view(event))

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
        "worker": event.worker,
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
                    item = await hub.next(sub, KEEPALIVE_S)
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
    raw = await streams.async_record_json(client, task_id)
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
        cursors = {"log": log_after, "metrics": metric_after}
        cursors["events"] = await streams.async_last_event_id(client)
        yield sse(views.task_summary(TaskRecord.from_json(raw)), event="task")
        while True:
            chunks = await streams.async_follow_task(client, task_id, cursors, BLOCK_MS)
            if not chunks:
                yield ": keepalive\n\n"
                continue
            changed = False
            for kind, items, mark in chunks:
                if kind == "events":
                    changed = changed or any(e.task_id == task_id for e in items)
                elif kind == "log":
                    lines = [{"id": line.id, "stream": line.stream, "text": line.text} for line in items]
                    yield sse({"lines": lines}, event="log", event_id=mark)
                else:
                    points = [{k: p[k] for k in ("title", "series", "value", "step")} for p in items]
                    yield sse({"points": points}, event="metric", event_id=mark)
            if changed:
                fresh = await streams.async_record_json(client, task_id)
                if fresh is None:
                    yield sse({"id": task_id}, event="deleted")
                    return
                yield sse(views.task_summary(TaskRecord.from_json(fresh)), event="task")

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)
