"""Which services (alerts, autoscaler) run where: entries refreshed by heartbeats, expiring after."""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis

from .backend import fleet

TTL_S = 10.0


def _entry(kind: str, name: str, facts: dict[str, Any]) -> str:
    return json.dumps({"kind": kind, "name": name, "at": time.time(), **facts})


def beat(conn: Redis, kind: str, name: str, facts: dict[str, Any]) -> None:
    """Announce (or refresh) a running service."""
    fleet.service_beat(conn, kind, name, _entry(kind, name, facts), int(TTL_S * 1000))


def announce(conn: Redis, kind: str, name: str, facts: dict[str, Any]) -> None:
    """The first heartbeat, with a ``service_up`` event for whoever waits on it."""
    fleet.service_beat(conn, kind, name, _entry(kind, name, facts), int(TTL_S * 1000), announce=True)


def gone(conn: Redis, kind: str, name: str) -> None:
    fleet.service_gone(conn, kind, name)


def running(conn: Redis, kind: str | None = None) -> list[dict[str, Any]]:
    """Live services (of ``kind``, when given), by kind and name; expired entries are pruned."""
    return [json.loads(r) for r in fleet.service_entries(conn, kind)]
