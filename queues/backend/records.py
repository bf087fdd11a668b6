"""Task records as stored (JSON strings): the raw reads outside the task store's transactions."""

from __future__ import annotations

from redis import Redis

from .. import keys


def record_json(conn: Redis, task_id: str) -> bytes | None:
    return conn.get(keys.task(task_id))


def records_json(conn: Redis, task_ids: list[str]) -> list[bytes | None]:
    return conn.mget([keys.task(t) for t in task_ids]) if task_ids else []


def counts(conn: Redis, statuses: list[str]) -> tuple[dict[str, int], int]:
    """Tasks per status and in all, one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for status in statuses:
            pipe.zcard(keys.status_index(status))
        pipe.zcard(keys.ALL)
        replies = pipe.execute()
    return dict(zip(statuses, replies[:-1])), replies[-1]
