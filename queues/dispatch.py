"""Handing queued tasks to workers: atomic claims, start, finish, requeue and retry.

A claim moves a task id from the head of a queue into the ``claims`` hash in one Lua call (only if
it is still the head the worker chose, and the queue is under its concurrency limit),
so a worker that dies between taking a task and starting it never loses it: the reaper finds
the claim and puts the task back. The claim stays while the task runs and goes with its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from . import lifecycle
from .backend import queues as queue_lists
from .backend import records
from .errors import IllegalTransition, TaskNotFound
from .record import Attempt, TaskRecord, TaskStatus
from .store import TaskStore

Edit = Callable[[TaskRecord], None]


DRAINING = "draining"  # claim_head's answer to a worker marked draining


@dataclass(frozen=True)
class Claimed:
    task_id: str
    queue: str


class Dispatcher:
    """Worker-side operations on tasks: claim, start, finish, requeue."""

    def __init__(self, connection: Redis, worker: str, host: str):
        self.conn = connection
        self.worker = worker
        self.host = host
        self.store = TaskStore(connection)

    def claim_head(self, queue: str, task_id: str, limit: int = 0) -> Claimed | str | None:
        """Take ``task_id`` if it is still the head of ``queue`` and the queue is under ``limit``
        running tasks (0: no limit); None when something else happened first, ``DRAINING`` when
        this worker was marked draining (it must take no more work)."""
        got = queue_lists.claim(self.conn, queue, task_id, self.worker, self.host, limit)
        if got is None:
            return DRAINING
        return Claimed(task_id, queue) if got else None

    def start(self, claimed: Claimed, gpus: list[str]) -> TaskRecord | None:
        """Mark the claimed task running; None (claim dropped) when it was dequeued or aborted meanwhile."""
        now = time.time()

        def apply(record: TaskRecord) -> None:
            record.started = now
            record.ended = None
            rt = record.runtime
            rt.worker, rt.host, rt.gpus = self.worker, self.host, list(gpus)
            rt.attempt += 1
            rt.exit_code = rt.error = None
            rt.abort_requested = False
            rt.log_tail = []
            rt.attempts = [*rt.attempts, Attempt(attempt=rt.attempt, worker=self.worker, host=self.host, started=now)]
            record.status_message = None

        try:
            return self.store.update(claimed.task_id, apply, action="start")
        except (IllegalTransition, TaskNotFound):
            records.release_claim(self.conn, claimed.task_id, claimed.queue)
            return None

    def finish(
        self,
        task_id: str,
        outcome: str,
        exit_code: int | None = None,
        error: str | None = None,
        log_tail: list[str] | None = None,
        message: str | None = None,
        attempt: int | None = None,
        also: Edit | None = None,
    ) -> TaskRecord | None:
        """End a running task as completed, failed or aborted; a failure with retries left is
        requeued at the front instead. ``lost`` (the worker ended it after losing Redis) counts as
        a failure whose attempt is recorded as lost, as the reaper does. Returns None when the task
        was taken from this worker (or this ``attempt`` of it is over). ``also`` makes more changes
        to the record in the same write (the worker's log uri)."""
        now = time.time()
        attempt_outcome = outcome
        if outcome == "lost":
            outcome = "failed"
        if outcome == "failed":
            record = self._current(task_id, attempt)
            if record is None:
                return None
            if lifecycle.may_retry(record.runtime.attempt, record.execution.retries):
                return self.requeue(
                    task_id,
                    reason=f"retrying after: {error or 'failure'}",
                    outcome=attempt_outcome,
                    exit_code=exit_code,
                    error=error,
                    attempt=attempt,
                    also=also,
                )
        action = {"completed": "complete", "failed": "fail", "aborted": "abort"}[outcome]

        def apply(rec: TaskRecord) -> None:
            rec.ended = now
            rec.runtime.exit_code = exit_code
            rec.runtime.error = error
            if log_tail is not None:
                rec.runtime.log_tail = log_tail
            if message is not None or outcome != "aborted":
                rec.status_message = message
            _close_attempt(rec, now, attempt_outcome, exit_code, error)

        return self._owned_update(task_id, apply, action, attempt=attempt, also=also)

    def requeue(
        self,
        task_id: str,
        reason: str,
        outcome: str = "requeued",
        exit_code: int | None = None,
        error: str | None = None,
        attempt: int | None = None,
        also: Edit | None = None,
    ) -> TaskRecord | None:
        """Put a running task back at the front of its queue (shutdown, retry)."""
        now = time.time()

        def apply(rec: TaskRecord) -> None:
            rec.queued_at = now
            rec.status_message = reason
            rec.runtime.exit_code = exit_code
            rec.runtime.error = error
            _close_attempt(rec, now, outcome, exit_code, error)

        return self._owned_update(task_id, apply, "requeue", attempt=attempt, also=also)

    def release(self, task_id: str) -> None:
        """Drop this worker's claim without touching the task."""
        records.release_claim(self.conn, task_id, worker=self.worker)

    # -- helpers -------------------------------------------------------------------------
    def _current(self, task_id: str, attempt: int | None = None) -> TaskRecord | None:
        """The record, if this worker runs it (this ``attempt`` of it, when given); else None."""
        try:
            record = self.store.get(task_id)
        except TaskNotFound:
            self.release(task_id)
            return None
        if not self._holds(record, attempt):
            self._release_stale(record)
            return None
        return record

    def _holds(self, record: TaskRecord, attempt: int | None) -> bool:
        return (
            record.status == TaskStatus.RUNNING
            and record.runtime.worker == self.worker
            and (attempt is None or record.runtime.attempt == attempt)
        )

    def _release_stale(self, record: TaskRecord) -> None:
        """After a late report of an attempt that was taken away: drop the claim only when the task
        is not this worker's any more (a newer attempt of it on this worker keeps its claim). A task
        that reads queued keeps this worker's claim: its start was lost (a failover without
        ``TRAINYARD_REDIS_REPLICAS``), the claim is all that still accounts for it, and the reaper
        returns it to its queue once the claim goes stale."""
        if record.runtime.worker != self.worker and record.status != TaskStatus.QUEUED:
            self.release(record.id)

    def _owned_update(
        self, task_id: str, apply, action: str, attempt: int | None = None, also: Edit | None = None
    ) -> TaskRecord | None:
        """Take ``action`` (its side effects drop this worker's claim) guarded by "held by this
        worker, this attempt"; None when the task was taken away."""

        def guarded(rec: TaskRecord) -> None:
            if rec.runtime.worker != self.worker or (attempt is not None and rec.runtime.attempt != attempt):
                raise IllegalTransition(task_id, action, f"held by {rec.runtime.worker}", ("this worker",))
            apply(rec)
            if also is not None:
                also(rec)

        try:
            return self.store.update(task_id, guarded, action=action)
        except TaskNotFound:
            self.release(task_id)
            return None
        except IllegalTransition:
            try:
                self._release_stale(self.store.get(task_id))
            except TaskNotFound:
                self.release(task_id)
            return None


def _close_attempt(rec: TaskRecord, now: float, outcome: str, exit_code: int | None, error: str | None) -> None:
    if rec.runtime.attempts:
        last = rec.runtime.attempts[-1].model_copy(
            update={"ended": now, "outcome": outcome, "exit_code": exit_code, "error": error}
        )
        rec.runtime.attempts = [*rec.runtime.attempts[:-1], last]
