"""The reaper: finds tasks whose worker died and ends or re-queues them.

A claim that no heartbeat refreshed for ``dead_after_s()`` seconds (the reaper reads only those:
the claims' index, scored by each claim's last refresh, gives them), and whose worker has no live
registry entry (or a live one, under the same name, that does not list the task: a worker restarted
with a fixed ``--name``), belongs to a dead worker. A task claimed but never started goes back
to the front of its queue (``return``); a running one is re-queued when it has retries left
(``requeue``), else failed with "worker lost" (``fail``): transitions of ``lifecycle.TABLE``.
Any process may reap (workers on their heartbeat, taking turns through a lease so that the fleet
makes one pass per period whatever its size; ``trainyard task wait`` on its reconcile tick); a
short Redis lock keeps two reapers from doing the same work. Right after Redis itself
restarted, reaping waits ``dead_after_s()`` so live workers can report. A running task left
without any claim (a failover lost the claim's write but kept the start) gets one back
(``adopt_unclaimed``, once per half dead-after bound for the fleet, on its own lease), so that it
is judged like any other and never stays running forever.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from redis import Redis

from . import lifecycle, workers
from .backend import fleet, records
from .dispatch import _close_attempt
from .errors import IllegalTransition, TaskNotFound
from .record import TaskRecord, TaskStatus
from .store import TaskStore

log = logging.getLogger("trainyard")


@dataclass(frozen=True)
class Reaped:
    task_id: str
    worker: str
    host: str
    pgid: int | None
    outcome: str  # requeued | failed | returned | dropped


def reap(conn: Redis, dead_after: float | None = None, turn: tuple[str, float] | None = None) -> list[Reaped]:
    """One pass over the claims; returns what was done (empty when another reaper holds the lock).

    ``turn`` (the caller's name, a period in seconds): pass only when no other caller has passed
    in this period (the fleet's lease), so N workers reaping every period cost one pass, not N.
    A pass that finds no stale claim ends there; only one that does takes the lock."""
    dead_after = workers.dead_after_s() if dead_after is None else dead_after
    if turn is not None and not fleet.take_reaper_turn(conn, turn[0], int(turn[1] * 1000)):
        return []
    if fleet.take_adoption_turn(conn, turn[0] if turn else "reaper", int(dead_after * 500)):
        adopt_unclaimed(conn)  # at most once per half dead-after bound, fleet-wide
    if not fleet.stale_claims(conn, time.time() - dead_after):
        return []  # nothing to judge (the usual pass): no lock, no server check
    with fleet.reaper_lock(conn) as held:
        if not held or fleet.server_uptime_s(conn) < dead_after:
            return []
        return _reap(conn, dead_after)


def adopt_unclaimed(conn: Redis) -> list[str]:
    """Give a claim back to every running task that has none, in the name of the worker its record
    names, stamped now. The reaper reads only claims, so such a task would otherwise stay running
    forever. A worker that runs it refreshes the claim from its next heartbeat; one that does not
    (it died, or never learnt that its start survived a failover) leaves it to be reaped
    ``dead_after_s()`` later like any claim, by which time that worker has fenced its copy."""
    adopted = []
    now = time.time()
    for record in TaskStore(conn).get_many(fleet.unclaimed_running(conn)):
        if record is None or record.status != TaskStatus.RUNNING:
            continue
        rt = record.runtime
        claim = {"worker": rt.worker or "", "host": rt.host or "", "queue": record.execution.queue or "", "ts": now}
        if fleet.adopt_claim(conn, record.id, json.dumps(claim), now):
            log.warning("task %s was running without a claim; claimed again for %s", record.id, rt.worker)
            adopted.append(record.id)
    return adopted


def _reap(conn: Redis, dead_after: float) -> list[Reaped]:
    """Judge only the claims nothing refreshed for ``dead_after`` (the old end of the claims'
    index): a pass costs what the dead left, not what the living hold."""
    now = time.time()
    parsed = fleet.stale_claims(conn, now - dead_after)
    if not parsed:
        return []
    names = sorted({c.get("worker", "") for c in parsed.values()})
    alive = dict(zip(names, fleet.worker_entries(conn, names)))
    store = TaskStore(conn)
    done = []
    for task_id, claim in parsed.items():
        worker = claim.get("worker", "")
        if now - float(claim.get("ts", 0)) < dead_after or _runs_it(alive.get(worker), task_id):
            continue
        outcome = _settle(conn, store, task_id, claim)
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


def _settle(conn: Redis, store: TaskStore, task_id: str, claim: dict) -> str:
    worker = claim.get("worker", "")
    try:
        record = store.get(task_id)
    except TaskNotFound:
        records.release_claim(conn, task_id)
        return "dropped"
    if record.status == TaskStatus.QUEUED and record.execution.queue:
        # claimed, never started: back to the front of its queue
        try:
            store.update(task_id, lambda rec: None, action="return")
        except (IllegalTransition, TaskNotFound):
            records.release_claim(conn, task_id)
            return "dropped"
        return "returned"
    if record.status != TaskStatus.RUNNING or record.runtime.worker != worker:
        records.release_claim(conn, task_id)
        return "dropped"
    now = time.time()
    error = f"worker lost: {worker} on {claim.get('host', '?')} stopped reporting"
    retry = lifecycle.may_retry(record.runtime.attempt, record.execution.retries)

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

    try:
        store.update(task_id, apply, action="requeue" if retry else "fail")
    except (IllegalTransition, TaskNotFound):
        records.release_claim(conn, task_id)
        return "dropped"
    return "requeued" if retry else "failed"
