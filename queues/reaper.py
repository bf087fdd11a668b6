"""The reaper: finds tasks whose worker died and ends or re-queues them.

A claim that no heartbeat refreshed for ``DEAD_AFTER_S`` seconds, and whose worker has no live
registry entry (or a live one, under the same name, that does not list the task: a worker restarted
with a fixed ``--name``), belongs to a dead worker. A task claimed but never started goes back
to the front of its queue; a running one is re-queued when it has retries left, else failed
with "worker lost". Any process may reap (workers do it on their heartbeat, ``trainyard task
wait`` on its reconcile tick); a short Redis lock keeps two reapers from doing the same work.
Right after Redis itself restarted, reaping waits ``DEAD_AFTER_S`` so live workers can report.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from redis import Redis

from . import keys, rqjob, workers
from .broker import Broker
from .dispatch import _close_attempt, wake_workers
from .errors import IllegalTransition, TaskNotFound
from .record import TaskRecord, TaskStatus
from .store import TaskStore


@dataclass(frozen=True)
class Reaped:
    task_id: str
    worker: str
    host: str
    pgid: int | None
    outcome: str  # requeued | failed | returned | dropped


def reap(conn: Redis, dead_after: float | None = None) -> list[Reaped]:
    """One pass over the claims; returns what was done (empty when another reaper holds the lock)."""
    dead_after = workers.DEAD_AFTER_S if dead_after is None else dead_after
    token = secrets.token_hex(8)
    if not conn.set(keys.REAPER_LOCK, token, nx=True, px=5000):
        return []
    try:
        if int(conn.info("server").get("uptime_in_seconds", 0)) < dead_after:
            return []
        return _reap(conn, dead_after)
    finally:
        if conn.get(keys.REAPER_LOCK) == token.encode():
            conn.delete(keys.REAPER_LOCK)


def _reap(conn: Redis, dead_after: float) -> list[Reaped]:
    claims = conn.hgetall(keys.CLAIMS)
    if not claims:
        return []
    now = time.time()
    parsed = {k.decode(): json.loads(v) for k, v in claims.items()}
    workers = sorted({c.get("worker", "") for c in parsed.values()})
    alive = dict(zip(workers, conn.mget([keys.worker(w) for w in workers])))
    store, broker = TaskStore(conn), Broker(conn)
    done = []
    for task_id, claim in parsed.items():
        worker = claim.get("worker", "")
        if now - float(claim.get("ts", 0)) < dead_after or _runs_it(alive.get(worker), task_id):
            continue
        outcome = _settle(conn, store, broker, task_id, claim)
        done.append(Reaped(task_id, worker, claim.get("host", ""), claim.get("pgid"), outcome))
    return done


def _runs_it(entry: bytes | None, task_id: str) -> bool:
    """Does a live registry entry say its worker is running ``task_id``? A worker restarted under
    the same name (a fixed ``--name``) is alive but knows nothing of its predecessor's claims."""
    if entry is None:
        return False
    try:
        return task_id in json.loads(entry).get("current", [])
    except (ValueError, AttributeError):
        return True  # unreadable: assume alive, as before


def _settle(conn: Redis, store: TaskStore, broker: Broker, task_id: str, claim: dict) -> str:
    worker = claim.get("worker", "")
    try:
        record = store.get(task_id)
    except TaskNotFound:
        conn.hdel(keys.CLAIMS, task_id)
        return "dropped"
    if record.status == TaskStatus.QUEUED and record.execution.queue:
        # claimed, never started: back to the front of its queue
        with conn.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.CLAIMS, task_id)
            pipe.zrem(keys.inflight(record.execution.queue), task_id)
            broker.push(pipe, record.execution.queue, task_id, record.execution.priority, True)
            pipe.execute()
        wake_workers(conn, task_id, record.execution.queue)
        return "returned"
    if record.status != TaskStatus.RUNNING or record.runtime.worker != worker:
        conn.hdel(keys.CLAIMS, task_id)
        return "dropped"
    now = time.time()
    error = f"worker lost: {worker} on {claim.get('host', '?')} stopped reporting"
    retry = record.runtime.attempt <= record.execution.retries

    def apply(rec: TaskRecord) -> None:
        if rec.runtime.worker != worker:
            raise IllegalTransition(task_id, "reap", f"held by {rec.runtime.worker}", (worker,))
        rec.runtime.error = error
        _close_attempt(rec, now, "lost", None, error)
        if retry:
            rec.queued_at = now
            rec.status_message = f"re-queued: {error}"
        else:
            rec.ended = now
            rec.status_message = error

    def hook(pipe, old: TaskRecord, new: TaskRecord) -> None:
        pipe.hdel(keys.CLAIMS, task_id)
        if retry:
            queue = new.execution.queue or ""
            rqjob.write_queued(pipe, task_id, queue, new.name, now)
            broker.push(pipe, queue, task_id, new.execution.priority, True)

    try:
        store.update(task_id, apply, action="requeue" if retry else "fail", hook=hook)
    except (IllegalTransition, TaskNotFound):
        conn.hdel(keys.CLAIMS, task_id)
        return "dropped"
    return "requeued" if retry else "failed"
