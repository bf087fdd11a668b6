"""The autoscaler's storage: its configuration, its instances, its decisions and its leader lease
(``scale.lua``). ``queues/scalestore.py`` holds the models and calls these."""

from __future__ import annotations

from redis import Redis

from .. import keys
from . import scripts


def put_config(conn: Redis, config_json: str) -> None:
    conn.set(keys.SCALE_CONFIG, config_json)


def config_json(conn: Redis) -> bytes | None:
    return conn.get(keys.SCALE_CONFIG)


def instance_entries(conn: Redis) -> list[bytes]:
    return list(conn.hgetall(keys.SCALE_INSTANCES).values())


def put_instance(conn: Redis, instance_id: str, entry_json: str) -> None:
    conn.hset(keys.SCALE_INSTANCES, instance_id, entry_json)


def drop_instance(conn: Redis, instance_id: str) -> None:
    conn.hdel(keys.SCALE_INSTANCES, instance_id)


def append_decision(conn: Redis, entry_json: str, maxlen: int) -> None:
    conn.xadd(keys.SCALE_DECISIONS, {"data": entry_json}, maxlen=maxlen, approximate=True)


def decisions(conn: Redis, count: int) -> list[bytes]:
    """The newest decisions' JSON, newest first."""
    return [f[b"data"] for _, f in conn.xrevrange(keys.SCALE_DECISIONS, count=count)]


def lead(conn: Redis, name: str, ttl_ms: int) -> bool:
    """Take or keep the leader lease (``scale.lua``)."""
    return bool(scripts.run(conn, "scale", "lead", [keys.SCALE_LEADER], [name, ttl_ms]))


def leader(conn: Redis) -> str | None:
    raw = conn.get(keys.SCALE_LEADER)
    return raw.decode() if raw else None


def resign(conn: Redis, name: str) -> None:
    scripts.run(conn, "scale", "resign", [keys.SCALE_LEADER], [name])
