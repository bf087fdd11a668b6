"""Queue lists on the worker's dispatch path: heads, limits, lengths, claims and pushes.

A queue is RQ's list ``rq:queue:<name>`` kept sorted by priority (``queue.lua`` does every
change to it that must be atomic)."""

from __future__ import annotations

import json
import time

from redis import Redis

from .. import keys
from . import scripts


def heads(conn: Redis, queues: list[str]) -> list[tuple[bytes | None, int]]:
    """Each queue's head task id (None when empty) and its running limit (0: none), one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.lindex(keys.rq_queue(queue), 0)
        pipe.hmget(keys.QUEUES, queues)
        replies = pipe.execute()
    limits = [int(json.loads(m).get("max_running") or 0) if m else 0 for m in replies[-1]]
    return list(zip(replies[: len(queues)], limits))


def running_count(conn: Redis, queue: str) -> int:
    """The queue's claimed or running tasks (what its concurrency limit counts)."""
    return conn.zcard(keys.inflight(queue))


def any_waiting(conn: Redis, queues: list[str]) -> bool:
    """Does any of ``queues`` hold a task?"""
    return any(conn.llen(keys.rq_queue(q)) for q in queues)


def claim(conn: Redis, queue: str, task_id: str, worker: str, host: str, limit: int) -> bool | None:
    """Take ``task_id`` if it is still the head of ``queue`` and the queue is under ``limit``
    (0: none), recording the claim; None when ``worker`` is marked draining (nothing taken)."""
    got = scripts.run(
        conn,
        "queue",
        "claim",
        [
            keys.rq_queue(queue),
            keys.priorities(queue),
            keys.CLAIMS,
            keys.inflight(queue),
            keys.DRAINING,
            keys.bell(queue),
            keys.CLAIMS_REFRESHED,
        ],
        [worker, host, time.time(), queue, task_id, int(limit)],
    )
    if got == -1:
        return None
    return bool(got)


def drop_head(conn: Redis, queue: str, head: bytes, unless_a_task: bool) -> bool:
    """Pop ``head`` if it is still the head of ``queue`` (and, with ``unless_a_task``, no task
    record has that id): what blocks a queue for ever leaves it."""
    prefix = keys.task("") if unless_a_task else ""
    return bool(scripts.run(conn, "queue", "drop_head", [keys.rq_queue(queue)], [head, prefix]))


def push(conn: Redis, pipe, queue: str, task_id: str, priority: int, front: bool) -> None:
    """Insert the task by priority (ahead of all with ``front``), inside the caller's transaction."""
    scripts.run(
        conn,
        "queue",
        "push",
        [keys.rq_queue(queue), keys.priorities(queue), keys.RQ_QUEUES, keys.bell(queue)],
        [task_id, int(priority), "1" if front else "0"],
        client=pipe,
    )


def remove(pipe, queue: str, task_id: str) -> None:
    """Take the task out of the queue, inside the caller's transaction."""
    pipe.lrem(keys.rq_queue(queue), 1, task_id)
    pipe.hdel(keys.priorities(queue), task_id)


def move(conn: Redis, queue: str, task_id: str, where: str, index: int) -> int:
    """Move a queued task to ``top``, ``bottom`` or ``index``; its new position, -1 when it is not there."""
    return int(
        scripts.run(conn, "queue", "move", [keys.rq_queue(queue), keys.priorities(queue)], [task_id, where, index])
    )


def count(conn: Redis) -> int:
    """How many queues are registered."""
    return conn.hlen(keys.QUEUES)


# -- the registry of named queues ---------------------------------------------------------------
def register(conn: Redis, name: str, meta_json: str) -> bool:
    """Register a queue (and RQ's list of it); False when it was registered already."""
    added = bool(conn.hsetnx(keys.QUEUES, name, meta_json))
    conn.sadd(keys.RQ_QUEUES, keys.rq_queue(name))
    return added


def is_registered(conn: Redis, name: str) -> bool:
    return bool(conn.hexists(keys.QUEUES, name))


def meta(conn: Redis, name: str) -> bytes | None:
    return conn.hget(keys.QUEUES, name)


def set_meta(conn: Redis, name: str, meta_json: str) -> None:
    conn.hset(keys.QUEUES, name, meta_json)


def names(conn: Redis) -> list[str]:
    return sorted(k.decode() for k in conn.hkeys(keys.QUEUES))


def stats(conn: Redis, queues: list[str]) -> list[tuple[bytes | None, int, int, bytes | None]]:
    """Per queue, in one round trip: its metadata, length, running count and head id."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.QUEUES, queues)
        for name in queues:
            pipe.llen(keys.rq_queue(name))
            pipe.zcard(keys.inflight(name))
            pipe.lindex(keys.rq_queue(name), 0)
        replies = pipe.execute()
    metas, rest = replies[0], replies[1:]
    return [(metas[i], rest[3 * i], rest[3 * i + 1], rest[3 * i + 2]) for i in range(len(queues))]


def waiting(conn: Redis, queue: str, offset: int, limit: int) -> list[tuple[str, int]]:
    """Queued task ids from ``offset`` in the order workers take them, with their priorities."""
    ids = [i.decode("utf-8", "replace") for i in conn.lrange(keys.rq_queue(queue), offset, offset + limit - 1)]
    prios = conn.hmget(keys.priorities(queue), ids) if ids else []
    return [(tid, int(p) if p is not None else 0) for tid, p in zip(ids, prios)]


def all_waiting(conn: Redis, queue: str) -> list[str]:
    return [i.decode() for i in conn.lrange(keys.rq_queue(queue), 0, -1)]


def unregister(conn: Redis, name: str) -> None:
    """Forget the queue: its registration, RQ's list and its priorities."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.QUEUES, name)
        pipe.srem(keys.RQ_QUEUES, keys.rq_queue(name))
        pipe.delete(keys.rq_queue(name), keys.priorities(name), keys.bell(name))
        pipe.execute()


def length(conn: Redis, queue: str) -> int:
    """How many tasks wait on ``queue``."""
    return conn.llen(keys.rq_queue(queue))


def head(conn: Redis, queue: str) -> str | None:
    """The id at the head of ``queue`` (None when it is empty)."""
    found = conn.lindex(keys.rq_queue(queue), 0)
    return found.decode() if found is not None else None
