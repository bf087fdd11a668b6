"""Hyper-parameter studies in Redis: the definition and state, the book of trials, the Optuna
journal, the stop flag, and the one blocking read a controller waits on.

A study's id is its controller task's id. Everything a controller knows lives here, so a
controller that is killed and started again carries on where it was (``controller/hpo``).
Part of the Redis backend; ``queues/studies.py`` is its public face.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from redis import Redis

from .. import keys
from ..errors import TaskNotFound
from . import streams


class StudyNotFound(TaskNotFound):
    """No study with that id."""


def save(conn: Redis, study_id: str, doc: dict[str, Any], created: float) -> None:
    """Write the study's document (and index it); publishes a ``study`` event for live views."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.set(keys.study(study_id), json.dumps(doc))
        pipe.zadd(keys.STUDIES, {study_id: created})
        streams.publish(pipe, "study", study_id, str(doc.get("status", "")), "", str(doc.get("project", "")), "")
        pipe.execute()


def load(conn: Redis, study_id: str) -> dict[str, Any]:
    raw = conn.get(keys.study(study_id))
    if raw is None:
        raise StudyNotFound(f"no study {study_id!r}")
    return json.loads(raw)


def list_ids(conn: Redis, limit: int = 50, offset: int = 0) -> list[str]:
    """Study ids, newest first."""
    return [i.decode() for i in conn.zrevrange(keys.STUDIES, offset, offset + limit - 1)]


def count(conn: Redis) -> int:
    """How many studies are stored."""
    return conn.zcard(keys.STUDIES)


def load_many(conn: Redis, study_ids: list[str]) -> list[dict[str, Any]]:
    raws = conn.mget([keys.study(i) for i in study_ids]) if study_ids else []
    return [json.loads(r) for r in raws if r is not None]


def put_trial(conn: Redis, study_id: str, number: int, entry: dict[str, Any]) -> None:
    """Record one trial's entry (one HSET)."""
    conn.hset(keys.study_trials(study_id), str(number), json.dumps(entry))


def trials(conn: Redis, study_id: str) -> dict[int, dict[str, Any]]:
    """Every trial's entry by trial number."""
    raw = conn.hgetall(keys.study_trials(study_id))
    return {int(k): json.loads(v) for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}


def journal_append(conn: Redis, study_id: str, entries: Iterable[str]) -> None:
    """Append Optuna journal operations (JSON text), in order, atomically."""
    items = list(entries)
    if items:
        conn.rpush(keys.study_journal(study_id), *items)


def journal_read(conn: Redis, study_id: str, start: int) -> list[bytes]:
    """Journal operations from number ``start`` on (the whole study in one round trip from 0)."""
    return conn.lrange(keys.study_journal(study_id), start, -1)


def request_stop(conn: Redis, study_id: str) -> None:
    with conn.pipeline(transaction=True) as pipe:
        pipe.set(keys.study_stop(study_id), "1", ex=30 * 24 * 3600)
        streams.publish(pipe, "study_stop", study_id, "", "", "", "")
        pipe.execute()


def stop_requested(conn: Redis, study_id: str) -> bool:
    return bool(conn.exists(keys.study_stop(study_id)))


def clear_stop(conn: Redis, study_id: str) -> None:
    conn.delete(keys.study_stop(study_id))


def delete(conn: Redis, study_id: str) -> None:
    with conn.pipeline(transaction=True) as pipe:
        for key in (keys.study(study_id), keys.study_trials(study_id), keys.study_journal(study_id)):
            pipe.delete(key)
        pipe.delete(keys.study_stop(study_id))
        pipe.zrem(keys.STUDIES, study_id)
        pipe.execute()


def read(conn: Redis, cursors: dict[str, str], block_s: float) -> list[tuple[str, str, dict[bytes, bytes]]]:
    """Block up to ``block_s`` on several streams at once (the event stream and the trials' metric
    streams); returns ``(stream, entry id, fields)`` in arrival order per stream and moves ``cursors``."""
    if not cursors:
        return []
    reply = conn.xread(cursors, block=streams.block_ms(conn, block_s), count=1000)
    out = []
    for stream, entries in reply or []:
        name = stream.decode() if isinstance(stream, bytes) else stream
        for entry_id, fields in entries:
            entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            cursors[name] = entry
            out.append((name, entry, fields))
    return out


def metric_entries(conn: Redis, task_id: str, after: str) -> list[tuple[str, dict[bytes, bytes]]]:
    """A task's metric stream after ``after`` (exclusive; ``0-0`` for all), oldest first."""
    start = "-" if after in ("0-0", "0", "-") else f"({after}"
    return [(i.decode() if isinstance(i, bytes) else i, f) for i, f in conn.xrange(keys.metrics(task_id), min=start)]
