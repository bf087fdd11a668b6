"""Task records: raw reads, the indexes and queries' Redis side, and the one write path for a
record change (``change``), which executes a declared transition (``lifecycle.TABLE``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis import Redis, WatchError
from redis.client import Pipeline

from .. import config, keys, rqjob
from ..errors import TaskNotFound
from ..lifecycle import Effect, Transition, check_deletable
from ..record import TaskRecord, TaskStatus
from . import queues, scripts, streams, wake

log = logging.getLogger("trainyard")
REPLICA_WAIT_MS = 5000  # longest wait for the replicas TRAINYARD_REDIS_REPLICAS asks for
WARN_EVERY_S = 30.0  # at most one warning this often about replicas that did not confirm
_warned_at = -WARN_EVERY_S
_NAME_SCAN_COUNT = 25_000  # members per ZSCAN call (a glob with no literal prefix or suffix)


# -- reads -----------------------------------------------------------------------------------------
def record_json(conn: Redis, task_id: str) -> bytes | None:
    return conn.get(keys.task(task_id))


def records_json(conn: Redis, task_ids: list[str]) -> list[bytes | None]:
    return conn.mget([keys.task(t) for t in task_ids]) if task_ids else []


def exists(conn: Redis, task_id: str) -> bool:
    return bool(conn.exists(keys.task(task_id)))


def counts(conn: Redis, statuses: list[str]) -> tuple[dict[str, int], int]:
    """Tasks per status and in all, one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for status in statuses:
            pipe.zcard(keys.status_index(status))
        pipe.zcard(keys.ALL)
        replies = pipe.execute()
    return dict(zip(statuses, replies[:-1])), replies[-1]


# -- indexes -----------------------------------------------------------------------------------------
def index_keys(record: TaskRecord) -> set[str]:
    """Every sorted-set index the record belongs to (all scored by creation time)."""
    found = {keys.ALL, keys.status_index(record.status.value), keys.project_index(record.project)}
    found.update(keys.tag_index(tag) for tag in record.tags)
    if record.execution.queue:
        found.add(keys.queue_index(record.execution.queue))
        if record.status == TaskStatus.RUNNING:
            found.add(keys.inflight(record.execution.queue))
    return found


def name_hint(conn: Redis, project: str, name: str) -> str | None:
    """The newest task id named ``name`` in ``project`` (a hint: verify it)."""
    hint = conn.hget(keys.NAMES, keys.name_field(project, name))
    return hint.decode() if hint is not None else None


def index_page(conn: Redis, index: str, start: int, stop: int) -> list[str]:
    """Ids of ``index`` newest first, positions ``start`` to ``stop`` (inclusive)."""
    return [i.decode() for i in conn.zrevrange(index, start, stop)]


def index_size(conn: Redis, index: str) -> int:
    return conn.zcard(index)


def index_sizes(conn: Redis, indexes: list[str]) -> list[int]:
    with conn.pipeline(transaction=False) as pipe:
        for key in indexes:
            pipe.zcard(key)
        return pipe.execute()


def intersect(conn: Redis, indexes: list[str]) -> dict[str, float]:
    """Ids in every one of ``indexes``, with their creation times."""
    return {m.decode(): score for m, score in conn.zinter(indexes, aggregate="MAX", withscores=True)}


def created_times(conn: Redis, task_ids: list[str]) -> list[float | None]:
    return conn.zmscore(keys.ALL, task_ids) if task_ids else []


def ids_named_like(conn: Redis, prefix: str = "", suffix: str = "", pattern: str = "") -> list[str]:
    """Ids whose name starts with ``prefix`` or (else) ends with ``suffix`` (lex ranges of the
    name indexes), or (else) matches the Redis ``pattern`` (ZSCAN MATCH)."""
    if suffix:
        start = suffix[::-1].encode()
        members = conn.zrangebylex(keys.NAME_REV, b"[" + start, b"(" + start + b"\xff")
    elif prefix:
        start = prefix.encode()
        members = conn.zrangebylex(keys.NAME_LEX, b"[" + start, b"(" + start + b"\xff")
    else:
        members = [m for m, _ in conn.zscan_iter(keys.NAME_LEX, match=pattern + "\x00*", count=_NAME_SCAN_COUNT)]
    return list(dict.fromkeys(m.rpartition(b"\x00")[2].decode() for m in members))


def name_scan_complete(conn: Redis) -> bool:
    """Whether every task has its name index entry (tasks stored by an older trainyard have none)."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.NAME_LEX)
        pipe.zcard(keys.ALL)
        named, total = pipe.execute()
    return named >= total


def _write_indexes(pipe: Pipeline, old: TaskRecord, new: TaskRecord) -> None:
    before, after = index_keys(old), index_keys(new)
    for key in before - after:
        pipe.zrem(key, new.id)
    for key in after - before:
        pipe.zadd(key, {new.id: new.created})
    if (old.project, old.name) != (new.project, new.name):
        pipe.hset(keys.NAMES, keys.name_field(new.project, new.name), new.id)
    if old.name != new.name:
        pipe.zrem(keys.NAME_LEX, keys.name_member(old.name, old.id))
        pipe.zrem(keys.NAME_REV, keys.name_member_reversed(old.name, old.id))
        pipe.zadd(keys.NAME_LEX, {keys.name_member(new.name, new.id): 0})
        pipe.zadd(keys.NAME_REV, {keys.name_member_reversed(new.name, new.id): 0})


# -- the RQ job ----------------------------------------------------------------------------------------
def _write_job_queued(pipe: Pipeline, task_id: str, queue: str, name: str, now: float) -> None:
    """(Re)create the job hash for a freshly queued task."""
    key = keys.rq_job(task_id)
    pipe.delete(key)
    pipe.hset(key, mapping={**rqjob.own_fields(task_id, name), **rqjob.queued_fields(queue, now)})


def _write_job_status(pipe: Pipeline, task_id: str, status: TaskStatus, now: float, worker: str | None) -> None:
    """Mirror a task status change onto its job; a job back in draft no longer exists."""
    key = keys.rq_job(task_id)
    if status == TaskStatus.DRAFT:
        pipe.delete(key)
        return
    fields: dict[str, str] = {"status": rqjob.RQ_STATUS[status]}
    if status == TaskStatus.RUNNING:
        fields.update(started_at=rqjob.utc(now), worker_name=worker or "", last_heartbeat=rqjob.utc(now))
    elif status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.ABORTED):
        fields["ended_at"] = rqjob.utc(now)
    pipe.hset(key, mapping=fields)
    if status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.ABORTED):
        pipe.expire(key, rqjob.FINISHED_JOB_TTL_S)
    else:
        pipe.persist(key)


# -- the one write path --------------------------------------------------------------------------------
def _effects(conn: Redis, pipe: Pipeline, step: Transition, old: TaskRecord, new: TaskRecord, now: float, front: bool):
    for effect in step.effects:
        if effect in (Effect.PUSH, Effect.PUSH_FRONT):
            queue = new.execution.queue or ""
            _write_job_queued(pipe, new.id, queue, new.name, new.queued_at or now)
            at_front = front or effect == Effect.PUSH_FRONT
            queues.push(conn, pipe, queue, new.id, new.execution.priority, at_front)
        elif effect == Effect.UNQUEUE:
            if old.status == TaskStatus.QUEUED and old.execution.queue:
                queues.remove(pipe, old.execution.queue, old.id)
        elif effect == Effect.DROP_CLAIM:
            pipe.hdel(keys.CLAIMS, new.id)
            pipe.zrem(keys.CLAIMS_REFRESHED, new.id)
            if old.execution.queue and old.status != TaskStatus.RUNNING:  # a running one leaves it by its indexes
                pipe.zrem(keys.inflight(old.execution.queue), new.id)
                wake.ring(conn, old.execution.queue, pipe)  # a slot is free: one waiting worker, if any
        elif effect == Effect.DROP_LOG:
            pipe.delete(keys.log(new.id), keys.metrics(new.id))


def replicated(conn: Redis) -> bool:
    """With ``TRAINYARD_REDIS_REPLICAS`` set, wait (up to 5 s) until that many replicas have every
    write the server took so far: the change is then acknowledged, and survives a failover. True
    when they confirmed (or none are asked for). With fewer replicas connected than asked for (the
    replica is down, or a failover promoted it and none has joined the new primary yet) it does not
    wait, which would only block the connection for nothing: False, with a warning.

    ``WAIT`` counts from the last write of the connection it runs on, and a pooled client may
    run it on another connection than the one that wrote (another thread had that one): a small
    write on the waiting connection first moves that point past every earlier write of the server."""
    global _warned_at
    wanted = config.current().redis_replicas
    if wanted <= 0:
        return True
    role = conn.execute_command("ROLE")  # a primary: [b"master", offset, [[host, port, offset], ...]]
    connected = len(role[2]) if role[0] == b"master" else 0
    got = 0
    if connected >= wanted:
        with conn.pipeline(transaction=False) as pipe:
            pipe.incr(keys.REPLICATION_MARK)
            pipe.wait(wanted, REPLICA_WAIT_MS)
            got = pipe.execute()[-1]
    if got >= wanted:
        return True
    if time.monotonic() - _warned_at >= WARN_EVERY_S:
        _warned_at = time.monotonic()
        log.warning(
            "TRAINYARD_REDIS_REPLICAS=%d: %d replica(s) connected, %d confirmed a change (within %d ms); "
            "changes live on the primary only until a replica catches up",
            wanted,
            connected,
            got,
            REPLICA_WAIT_MS,
        )
    return False


def acknowledged(conn: Redis, key: str, written: bytes) -> bool:
    """Whether a change that wrote ``written`` at ``key`` may be acted on: at once without
    ``TRAINYARD_REDIS_REPLICAS``; with it, once the replicas were waited for and the record read
    back from the server that answers now. The read is needed even when the wait was confirmed: a
    wait that lost its link is retried, and after a failover the retry runs on the promoted server,
    whose replica then confirms that server's writes, not this change."""
    if config.current().redis_replicas <= 0:
        return True
    replicated(conn)
    return _kept(conn, key, written)


def _kept(conn: Redis, key: str, written: bytes) -> bool:
    """Is the change on the server that answers now (the same primary, or one promoted by a
    failover that had it)? A later change built on it counts as kept; a record at or below its
    revision without it is a lost change."""
    data = conn.get(key)
    if data is None or data == written:
        return data is not None
    return TaskRecord.from_json(data).rev > TaskRecord.from_json(written).rev


def change(
    conn: Redis,
    task_id: str,
    edit: Callable[[TaskRecord], None],
    step: Transition | None = None,
    check: Callable[[TaskRecord], Transition] | None = None,
    event_kind: str | None = None,
    front: bool = False,
) -> TaskRecord:
    """Read, change and write one record in one transaction (optimistic lock on its key).

    ``check(old)`` returns the transition to take (raising IllegalTransition when the status read
    inside the transaction does not allow it), so of two racing conflicting changes exactly one
    wins. ``edit`` changes a copy of the record (and may refuse by raising). Then the record,
    its indexes, the RQ job's status, the transition's side effects and the event are written
    in one MULTI. Without a transition it is a plain edit (an event only when ``event_kind``)."""
    key = keys.task(task_id)
    written: bytes | None = None  # what this call wrote last, while its fate is unknown
    while True:
        with conn.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                data = pipe.get(key)
                if data is None:
                    raise TaskNotFound(f"no task with id {task_id!r}")
                if written is not None and data == written:
                    # this call's own write is there: its reply (or its replicas' ack) was lost, and
                    # the retry must not take the transition a second time
                    return TaskRecord.from_json(data)
                old = TaskRecord.from_json(data)
                new = TaskRecord.from_json(data)  # a second parse is cheaper than a deep copy
                now = time.time()
                taken = check(old) if check is not None else step
                if taken is not None:
                    new.status = taken.target
                edit(new)
                new.rev = old.rev + 1
                new.updated = now
                pipe.multi()
                written = new.to_json()
                pipe.set(key, written)
                _write_indexes(pipe, old, new)
                if new.status != old.status:
                    _write_job_status(pipe, task_id, new.status, now, new.runtime.worker)
                if taken is not None:
                    _effects(conn, pipe, taken, old, new, now, front)
                kind = event_kind or (taken.event if taken is not None and taken.event != "status" else None)
                kind = kind or ("status" if new.status != old.status else None)
                if kind:
                    streams.publish(
                        pipe, kind, task_id, new.status.value, old.status.value, new.project, new.execution.queue or ""
                    )
                pipe.execute()
            except WatchError:
                continue  # another change came first, or the link broke under this one (``written`` tells)
        if acknowledged(conn, key, written):
            return new
        # a failover lost the change before a replica had it: take it again on what the new primary holds


def remove(conn: Redis, task_id: str) -> TaskRecord:
    """Delete a record that may be deleted, with its indexes, job and log, and a ``deleted`` event."""
    key = keys.task(task_id)
    while True:
        with conn.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                data = pipe.get(key)
                if data is None:
                    raise TaskNotFound(f"no task with id {task_id!r}")
                old = TaskRecord.from_json(data)
                check_deletable(task_id, old.status)
                pipe.multi()
                pipe.delete(key, keys.log(task_id), keys.rq_job(task_id))
                for index in index_keys(old):
                    pipe.zrem(index, task_id)
                pipe.zrem(keys.NAME_LEX, keys.name_member(old.name, task_id))
                pipe.zrem(keys.NAME_REV, keys.name_member_reversed(old.name, task_id))
                streams.publish(pipe, "deleted", task_id, old.status.value, old.status.value, old.project)
                pipe.execute()
                break
            except WatchError:
                continue
    field = keys.name_field(old.project, old.name)
    hint = conn.hget(keys.NAMES, field)
    if hint is not None and hint.decode() == old.id:
        conn.hdel(keys.NAMES, field)
    return old


def release_claim(conn: Redis, task_id: str, queue: str | None = None, worker: str | None = None) -> None:
    """Drop a claim (only ``worker``'s, when given: compared and dropped in one step) and, with
    ``queue``, the in-flight entry."""
    claim_keys = [keys.CLAIMS, keys.CLAIMS_REFRESHED, *([keys.inflight(queue)] if queue else [])]
    scripts.run(conn, "claims", "release", claim_keys, [task_id, worker or ""])


def index_oldest(conn: Redis, index: str, count: int) -> list[str]:
    """The first ``count`` ids of ``index``, oldest first."""
    return [i.decode() for i in conn.zrange(index, 0, count - 1)]
