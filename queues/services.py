"""Which services (alerts, autoscaler) run where: entries refreshed by heartbeats, expiring after."""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis

from . import keys

TTL_S = 10.0


def beat(conn: Redis, kind: str, name: str, facts: dict[str, Any]) -> None:
    """Announce (or refresh) a running service."""
    entry = json.dumps({"kind": kind, "name": name, "at": time.time(), **facts})
    with conn.pipeline(transaction=False) as pipe:
        pipe.set(keys.service(kind, name), entry, px=int(TTL_S * 1000))
        pipe.sadd(keys.SERVICES, f"{kind}:{name}")
        pipe.execute()


def announce(conn: Redis, kind: str, name: str, facts: dict[str, Any]) -> None:
    """The first heartbeat, with a ``service_up`` event for whoever waits on it."""
    beat(conn, kind, name, facts)
    conn.xadd(
        keys.EVENTS,
        {"task": "", "kind": "service_up", "status": kind, "prev": "", "project": "", "queue": name},
        maxlen=100_000,
        approximate=True,
    )


def gone(conn: Redis, kind: str, name: str) -> None:
    with conn.pipeline(transaction=True) as pipe:
        pipe.delete(keys.service(kind, name))
        pipe.srem(keys.SERVICES, f"{kind}:{name}")
        pipe.execute()


def running(conn: Redis, kind: str | None = None) -> list[dict[str, Any]]:
    """Live services (of ``kind``, when given), by kind and name; expired entries are pruned."""
    members = sorted(m.decode() for m in conn.smembers(keys.SERVICES))
    if kind is not None:
        members = [m for m in members if m.split(":", 1)[0] == kind]
    if not members:
        return []
    raws = conn.mget([keys.service(*m.split(":", 1)) for m in members])
    dead = [m for m, r in zip(members, raws) if r is None]
    if dead:
        conn.srem(keys.SERVICES, *dead)
    return [json.loads(r) for r in raws if r is not None]
