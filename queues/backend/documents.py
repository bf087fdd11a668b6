"""JSON documents beside the task records: pipeline runs and their stop flags, the step cache,
registered pipeline files, schedules, trigger claims, web tokens and sessions."""

from __future__ import annotations

from redis import Redis
from redis.client import Pipeline

from .. import keys
from . import streams

STOP_TTL_S = 7 * 24 * 3600


# -- pipeline runs -------------------------------------------------------------------------------
def save_run(conn: Redis, run_id: str, doc_json: str, created: float, status: str, project: str) -> None:
    """Write a run's document, index it and publish a ``pipeline`` event, in one transaction."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.set(keys.pipeline(run_id), doc_json)
        pipe.zadd(keys.PIPELINES, {run_id: created})
        streams.publish(pipe, "pipeline", run_id, status, "", project, "")
        pipe.execute()


def run_json(conn: Redis, run_id: str) -> bytes | None:
    return conn.get(keys.pipeline(run_id))


def runs_page(conn: Redis, offset: int, limit: int) -> list[bytes]:
    """Run documents newest first, ``limit`` from ``offset``."""
    ids = [i.decode() for i in conn.zrevrange(keys.PIPELINES, offset, offset + limit - 1)]
    return [r for r in (conn.mget([keys.pipeline(i) for i in ids]) if ids else []) if r is not None]


def run_count(conn: Redis) -> int:
    return conn.zcard(keys.PIPELINES)


def set_stop(conn: Redis, run_id: str, stop: bool) -> None:
    """Raise (or lower) a run's stop flag: its controller ends the run at its next pass."""
    if stop:
        conn.set(keys.pipeline(run_id) + ":stop", "1", ex=STOP_TTL_S)
    else:
        conn.delete(keys.pipeline(run_id) + ":stop")


def stop_requested(conn: Redis, run_id: str) -> bool:
    return bool(conn.exists(keys.pipeline(run_id) + ":stop"))


# -- step cache ----------------------------------------------------------------------------------
def cached_task(conn: Redis, key: str) -> str | None:
    task_id = conn.get(keys.step_cache(key))
    return task_id.decode() if task_id is not None else None


def cache_task(conn: Redis, key: str, task_id: str | None) -> None:
    """Remember ``task_id`` under ``key`` (None: forget the entry)."""
    if task_id is None:
        conn.delete(keys.step_cache(key))
    else:
        conn.set(keys.step_cache(key), task_id)


# -- hashes of named JSON documents: pipeline files, schedules ------------------------------------
_COLLECTIONS = {"pipefiles": keys.PIPEFILES, "schedules": keys.SCHEDULES, "task_triggers": keys.TASK_TRIGGERS}


def put(conn: Redis, collection: str, name: str, doc_json: str) -> None:
    """Store a document of ``collection`` (``pipefiles``, ``schedules``, ``task_triggers``) under ``name``."""
    conn.hset(_COLLECTIONS[collection], name, doc_json)


def get(conn: Redis, collection: str, name: str) -> bytes | None:
    return conn.hget(_COLLECTIONS[collection], name)


def all_docs(conn: Redis, collection: str) -> list[bytes]:
    return list(conn.hgetall(_COLLECTIONS[collection]).values())


def drop(conn: Redis, collection: str, name: str) -> bool:
    """Remove a document; False when there was none."""
    return bool(conn.hdel(_COLLECTIONS[collection], name))


# -- trigger claims ------------------------------------------------------------------------------
def claim_occurrence(conn: Redis, trigger_id: str, occurrence: str, service: str, ttl_s: int) -> bool:
    """SET NX by the service that fires this (trigger, tick or event): nothing fires twice."""
    return bool(conn.set(keys.trigger_claim(trigger_id, occurrence), service, nx=True, ex=ttl_s))


# -- web tokens and sessions --------------------------------------------------------------------
def put_token(conn: Redis, hashed: str, info_json: str) -> None:
    conn.hset(keys.WEB_TOKENS, hashed, info_json)


def token(conn: Redis, hashed: str) -> bytes | None:
    return conn.hget(keys.WEB_TOKENS, hashed)


def tokens(conn: Redis) -> list[tuple[str, bytes]]:
    """Every ``(sha256, info JSON)``."""
    return [(h.decode(), raw) for h, raw in conn.hscan_iter(keys.WEB_TOKENS)]


def drop_token(conn: Redis, hashed: str) -> None:
    conn.hdel(keys.WEB_TOKENS, hashed)


def token_exists(conn: Redis, hashed: str) -> bool:
    return bool(conn.hexists(keys.WEB_TOKENS, hashed))


def bootstrap_lock(conn: Redis, take: bool) -> bool:
    """Take (True when we got it) or let go of the lock held while the first admin token is made."""
    if take:
        return bool(conn.set(keys.WEB_BOOTSTRAP, "1", nx=True, ex=30))
    conn.delete(keys.WEB_BOOTSTRAP)
    return True


def put_session(conn: Redis, digest: str, payload_json: str, ttl_s: int) -> None:
    conn.set(keys.web_session(digest), payload_json, ex=ttl_s)


def session(conn: Redis, digest: str) -> bytes | None:
    return conn.get(keys.web_session(digest))


def drop_session(conn: Redis, digest: str) -> None:
    conn.delete(keys.web_session(digest))


def drop_log(pipe: Pipeline, task_id: str) -> None:
    """Delete a task's log stream, inside the caller's transaction (a reset)."""
    pipe.delete(keys.log(task_id))
