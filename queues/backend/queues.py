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
        [keys.rq_queue(queue), keys.priorities(queue), keys.CLAIMS, keys.inflight(queue), keys.DRAINING],
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
        [keys.rq_queue(queue), keys.priorities(queue), keys.RQ_QUEUES],
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
