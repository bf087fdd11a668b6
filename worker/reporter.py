"""Forwarding a running task's output to Redis: log lines, metrics, outputs, artifacts.

Log lines are batched (one pipeline every ``FLUSH_S``) into the task's capped log stream and
written whole to a log file; the run folder's event file is read on the same tick. When Redis
is unreachable, everything waits in memory (lines up to a cap; the file keeps all) and goes out
once it is back.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from pathlib import Path
from typing import Any

import redis

from ..queues.backend import streams
from ..queues.record import MetricSummary, TaskRecord, TaskStatus
from ..queues.store import TaskStore
from . import queries
from .artifacts import ArtifactStore
from .runfolder import EventReader, resolve_artifact, write_reply
from .secrets import Redactor

FLUSH_S = 0.1
PENDING_LINES_MAX = 50_000
TAIL_LINES = 30
MAX_ERROR_CHARS = 500  # of the line that becomes a failed task's error
# What one task may put in its record, so that a runaway task cannot fill Redis (its log stream is
# capped in queues/logs.py; the metric history stream too). Beyond these, reports are refused with a line in the log.
MAX_VALUE_BYTES = 64 * 1024  # one output, one connected parameter, one artifact's metadata (as JSON)
MAX_OUTPUTS = 256
MAX_PARAMETERS = 1000
MAX_ARTIFACTS = 1000
MAX_SERIES = 1000  # metric (title, series) pairs summarised on the record
QUERIES_PER_TICK = 50  # a task's questions about other tasks answered per tick (FLUSH_S); more are refused

log = logging.getLogger("trainyard.worker")


class Reporter:
    """One per running task; thread-safe ``line()``; ``close()`` flushes everything."""

    def __init__(
        self,
        conn: redis.Redis,
        task_id: str,
        worker: str,
        run_dir: Path,
        artifacts: ArtifactStore,
        log_file: Path,
        redactor: Redactor | None = None,
        attempt: int | None = None,
    ):
        self.conn = conn
        self.attempt = attempt
        self.redactor = redactor or Redactor(())
        self.task_id = task_id
        self.worker = worker
        self.run_dir = run_dir
        self.artifacts = artifacts
        self.store = TaskStore(conn)
        self.reader = EventReader(run_dir)
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[str, str]] = collections.deque()
        self._dropped = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.last_error_line = ""  # the task's last non-blank stderr line: a failed task's error
        self.failure: str | None = None  # asked for by the task (fail_at_exit): it ends failed with this
        self._log = open(log_file, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._points: list[dict] = []
        self._changes: list[dict] = []
        self._names: dict[str, set] = {"output": set(), "parameters": set(), "artifact": set(), "metric": set()}
        self._refused: set[str] = set()
        self._queries = 0  # questions answered on this tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"report-{task_id}", daemon=True)
        self._started = False

    def start(self) -> None:
        """Start the flushing thread (once). The worker starts it when the task's process runs, or
        before a slow preparation (a checkout, an environment), so a quick task's start does not
        wait for a thread; lines written before are kept and flushed then."""
        if not self._started:
            self._started = True
            self._thread.start()

    # -- producers -----------------------------------------------------------------------
    def line(self, stream: str, text: str) -> None:
        text = self.redactor.text(text.rstrip("\n"))
        with self._lock:
            self._log.write(text + "\n")
            if stream != "sys":
                self.tail.append(text)
            if stream == "err" and text.strip():
                self.last_error_line = text.strip()[:MAX_ERROR_CHARS]
            if len(self._pending) >= PENDING_LINES_MAX:
                self._pending.popleft()
                self._dropped += 1
            self._pending.append((stream, text))

    def system(self, text: str) -> None:
        """A progress line from the worker itself (shown in the task log, prefixed)."""
        self.line("sys", f"[trainyard] {text}")

    # -- the flushing thread ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self._tick()

    def _tick(self, final: bool = False) -> bool:
        """Read new task events and push what is pending; False when Redis refused."""
        events, errors = self.reader.poll_with_errors(final=final)
        self._queries = 0
        for error in errors:
            self.system(f"ignored a bad line in events.jsonl: {error}")
        for event in events:
            self._absorb(event)
        with self._lock:
            lines = list(self._pending)
            points = list(self._points)
            changes = list(self._changes)
            self._log.flush()
        if not (lines or points or changes):
            return True
        try:
            if lines or points:
                streams.append_report(self.conn, self.task_id, lines, points)
            if changes or points:
                self._update_record(points, changes)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("task %s: Redis unreachable while reporting (%s); will retry", self.task_id, exc)
            return False
        with self._lock:
            for _ in lines:
                self._pending.popleft()
            del self._points[: len(points)]
            del self._changes[: len(changes)]
        return True

    def _within_caps(self, event: dict[str, Any]) -> bool:
        """Room for this report? (Counts per attempt; a refusal is logged once per kind and reason.)"""
        kind = event["kind"]
        limit = {"output": MAX_OUTPUTS, "parameters": MAX_PARAMETERS, "artifact": MAX_ARTIFACTS, "metric": MAX_SERIES}
        names = self._names[kind]
        if kind == "metric":
            new = {(event["title"], event["series"])}
        elif kind == "parameters":
            new = set(event["values"])
        else:
            new = {event["name"]}
        reason = None
        if len(names | new) > limit[kind]:
            reason = f"more than {limit[kind]} {kind} names"
        elif kind != "metric":
            value = event.get("value", event.get("values", event.get("metadata")))
            size = len(json.dumps(value, default=str))
            if kind == "parameters":
                size = max((len(json.dumps(v, default=str)) for v in event["values"].values()), default=0)
            if size > MAX_VALUE_BYTES:
                reason = f"a value of {size} bytes (the limit is {MAX_VALUE_BYTES})"
        if reason is not None:
            if (kind, reason) not in self._refused:
                self._refused.add((kind, reason))
                self.system(f"{kind} report refused: {reason}; the record keeps what came before")
            return False
        names |= new
        return True

    def _absorb(self, event: dict[str, Any]) -> None:
        event = self.redactor.value(event)  # a task that reports a secret gets it masked too
        kind = event["kind"]
        if kind == "query":
            self._answer(event)
            return
        if kind == "failure":
            self.failure = event["error"][:MAX_ERROR_CHARS]
            self.system(f"the task asked to end failed: {self.failure}")
            return
        if not self._within_caps(event):
            return
        if kind == "metric":
            with self._lock:
                self._points.append(event)
        elif kind == "artifact":
            try:
                path = resolve_artifact(self.run_dir, event["path"])
                artifact = self.artifacts.put(self.task_id, event["name"], path, event.get("metadata") or {})
            except (ValueError, OSError) as exc:
                self.system(f"artifact {event.get('name')!r} refused: {exc}")
                return
            with self._lock:
                self._changes.append({"kind": "artifact", "artifact": artifact})
            self.system(f"artifact {artifact.name} stored ({artifact.size} bytes)")
        else:
            with self._lock:
                self._changes.append(event)

    def _answer(self, event: dict[str, Any]) -> None:
        """A read-only question about other tasks, answered from Redis into the run folder."""
        self._queries += 1
        if self._queries > QUERIES_PER_TICK:
            reply = {"ok": False, "reason": "unavailable", "error": f"more than {QUERIES_PER_TICK} questions at once"}
        else:
            reply = self.redactor.value(queries.answer(self.store, event["op"], event["args"]))
        try:
            write_reply(self.run_dir, event["id"], reply)
        except (ValueError, OSError) as exc:
            self.system(f"could not answer the task's question: {exc}")

    def _update_record(self, points: list[dict], changes: list[dict]) -> None:
        def apply(record: TaskRecord) -> None:
            if record.status != TaskStatus.RUNNING or record.runtime.worker != self.worker:
                return
            if self.attempt is not None and record.runtime.attempt != self.attempt:
                return  # a newer attempt runs now: this one's late reports are dropped
            metrics = {title: dict(series) for title, series in record.metrics.items()}
            for p in points:
                value = float(p["value"])
                old = metrics.get(p["title"], {}).get(p["series"])
                summary = MetricSummary(
                    last=value,
                    min=value if old is None else min(old.min, value),
                    max=value if old is None else max(old.max, value),
                    step=p.get("step"),
                    count=1 if old is None else old.count + 1,
                )
                metrics.setdefault(p["title"], {})[p["series"]] = summary
            record.metrics = metrics
            outputs, artifacts, params = dict(record.outputs), dict(record.artifacts), dict(record.parameters)
            for change in changes:
                if change["kind"] == "output":
                    outputs[change["name"]] = change["value"]
                elif change["kind"] == "artifact":
                    artifacts[change["artifact"].name] = change["artifact"]
                elif change["kind"] == "parameters":
                    for key, value in change["values"].items():
                        params.setdefault(key, value)
            record.outputs, record.artifacts, record.parameters = outputs, artifacts, params

        self.store.update(self.task_id, apply)

    # -- the end -------------------------------------------------------------------------
    def close(self, retry_for_s: float = 300.0) -> None:
        """Stop the thread and flush everything, retrying while Redis is away."""
        self._stop.set()
        if self._started:
            self._thread.join()
        waited, pause = 0.0, 0.2
        while not self._tick(final=True) and waited < retry_for_s:
            threading.Event().wait(pause)
            waited += pause
            pause = min(pause * 2, 5.0)
        if self._dropped:
            self.system(f"{self._dropped} early log lines were not kept in Redis (the log file has them)")
            self._tick()
        self._log.close()

    def tail_lines(self) -> list[str]:
        with self._lock:
            return list(self.tail)
