"""The fleet registry: who is working, where, on what. Entries expire when heartbeats stop."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pydantic import BaseModel, Field
from redis import Redis

from . import keys
from .backend import scripts
from .errors import InvalidInput


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


# Timings (overridable from the environment, e.g. to make recovery tests fast):
HEARTBEAT_S = _seconds("TRAINYARD_HEARTBEAT_S", 2.0)  # how often a worker reports
WORKER_TTL_S = _seconds("TRAINYARD_WORKER_TTL_S", 10.0)  # its entry disappears this long after the last report
DEAD_AFTER_S = _seconds("TRAINYARD_DEAD_AFTER_S", 20.0)  # a claim unrefreshed this long, worker gone: reaped


class WorkerInfo(BaseModel):
    name: str
    host: str
    pid: int
    queues: list[str]
    gpus: list[int] = Field(default_factory=list)
    mode: str = "local"
    order: str = "strict"
    state: str = "idle"  # idle | busy | draining | stopping
    current: list[str] = Field(default_factory=list)
    started: float = Field(default_factory=time.time)
    heartbeat: float = Field(default_factory=time.time)
    version: str = ""
    stats: dict[str, Any] = Field(default_factory=dict)
    command: str | None = None  # drain | stop, set by `trainyard worker drain|stop`


def register(conn: Redis, info: WorkerInfo, pid_alive) -> None:
    """Claim the worker name. Refused while a live worker holds it; a dead holder on this host
    (its pid gone) is taken over at once."""
    key = keys.worker(info.name)
    payload = info.model_dump_json()
    if conn.set(key, payload, nx=True, px=int(WORKER_TTL_S * 1000)):
        _announce(conn, info)
        return
    raw = conn.get(key)
    if raw is not None:
        holder = WorkerInfo.model_validate_json(raw)
        if not (holder.host == info.host and not pid_alive(holder.pid)):
            raise InvalidInput(
                f"worker name {info.name!r} is in use by pid {holder.pid} on {holder.host} "
                f"(last heartbeat {time.time() - holder.heartbeat:.0f}s ago); pick another --name"
            )
    conn.set(key, payload, px=int(WORKER_TTL_S * 1000))
    _announce(conn, info)


def _announce(conn: Redis, info: WorkerInfo) -> None:
    name = info.name
    with conn.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.WORKERS, name)
        fleet = {"host": info.host, "started": info.started, "queues": info.queues}
        pipe.hset(keys.FLEET, name, json.dumps(fleet))
        pipe.srem(keys.DRAINING, name)  # a new worker under an old name is not draining
        pipe.xadd(
            keys.EVENTS,
            {"task": "", "kind": "worker_up", "status": "up", "prev": "", "project": "", "queue": name},
            maxlen=100_000,
            approximate=True,
        )
        pipe.execute()


def publish_state(conn: Redis, info: WorkerInfo) -> None:
    """Announce a state change (draining, stopping) at once, beside the registry entry."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.set(keys.worker(info.name), info.model_dump_json(), px=int(WORKER_TTL_S * 1000))
        pipe.xadd(
            keys.EVENTS,
            {"task": "", "kind": "worker_state", "status": info.state, "prev": "", "project": "", "queue": info.name},
            maxlen=100_000,
            approximate=True,
        )
        pipe.execute()


def heartbeat(conn: Redis, info: WorkerInfo, claimed: dict[str, int | None]) -> str | None:
    """Refresh the entry and the worker's claims (with each task's process group, so a reaper on
    this host can end what a dead worker left); returns a pending command (drain/stop), if any."""
    key = keys.worker(info.name)
    now = time.time()
    info.heartbeat = now
    raw = conn.get(key)
    current = WorkerInfo.model_validate_json(raw) if raw else None
    command = current.command if current else None
    if command and not info.command:
        info.command = command
    pairs = [str(v) for task_id, pgid in claimed.items() for v in (task_id, pgid or "")]
    with conn.pipeline(transaction=False) as pipe:
        pipe.set(key, info.model_dump_json(), px=int(WORKER_TTL_S * 1000))
        pipe.sadd(keys.WORKERS, info.name)
        if pairs:
            scripts.run(conn, "claims", "refresh", [keys.CLAIMS], [info.name, repr(now), *pairs], client=pipe)
        pipe.execute()
    return info.command


def unregister(conn: Redis, name: str) -> None:
    with conn.pipeline(transaction=True) as pipe:
        pipe.delete(keys.worker(name))
        pipe.srem(keys.WORKERS, name)
        pipe.srem(keys.DRAINING, name)
        pipe.hdel(keys.FLEET, name)  # a clean exit: not lost
        pipe.xadd(
            keys.EVENTS,
            {"task": "", "kind": "worker_down", "status": "down", "prev": "", "project": "", "queue": name},
            maxlen=100_000,
            approximate=True,
        )
        pipe.execute()


def lost(conn: Redis) -> dict[str, str]:
    """Workers whose entry expired without a clean exit: name -> their fleet entry (JSON:
    host, started, queues)."""
    fleet = {k.decode(): v.decode() for k, v in conn.hgetall(keys.FLEET).items()}
    if not fleet:
        return {}
    names = list(fleet)
    alive = conn.mget([keys.worker(n) for n in names])
    return {n: fleet[n] for n, raw in zip(names, alive) if raw is None}


def forget(conn: Redis, name: str, seen: str) -> None:
    """Drop a lost worker from the fleet, unless a new worker took the name meanwhile."""

    def drop(pipe) -> None:
        current = pipe.hget(keys.FLEET, name)
        pipe.multi()
        if current is not None and current.decode() == seen:
            pipe.hdel(keys.FLEET, name)

    conn.transaction(drop, keys.FLEET)


def get(conn: Redis, name: str) -> WorkerInfo | None:
    raw = conn.get(keys.worker(name))
    return WorkerInfo.model_validate_json(raw) if raw else None


def list_workers(conn: Redis) -> list[WorkerInfo]:
    """Live workers, by name; names whose entry expired are pruned from the set."""
    names = sorted(n.decode() for n in conn.smembers(keys.WORKERS))
    if not names:
        return []
    raws = conn.mget([keys.worker(n) for n in names])
    gone = [n for n, r in zip(names, raws) if r is None]
    if gone:
        conn.srem(keys.WORKERS, *gone)
        conn.srem(keys.DRAINING, *gone)
    return [WorkerInfo.model_validate_json(r) for r in raws if r is not None]


def send_command(conn: Redis, name: str, command: str) -> WorkerInfo:
    """Ask a live worker to ``drain`` (finish current work, exit) or ``stop`` (abort and requeue).

    Both mark it draining in Redis in the same transaction as the command: from that moment its
    claim script refuses new work, whether or not the worker has seen the command yet."""
    if command not in ("drain", "stop"):
        raise InvalidInput(f"unknown worker command {command!r} (drain or stop)")
    key = keys.worker(name)
    raw = conn.get(key)
    if raw is None:
        raise InvalidInput(f"no live worker named {name!r}")
    info = WorkerInfo.model_validate_json(raw)
    info.command = command
    ttl = conn.pttl(key)
    with conn.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.DRAINING, name)
        pipe.set(key, info.model_dump_json(), px=ttl if ttl and ttl > 0 else int(WORKER_TTL_S * 1000))
        pipe.xadd(
            keys.EVENTS,
            {"task": "", "kind": "worker_command", "status": command, "prev": "", "project": "", "queue": name},
            maxlen=100_000,
            approximate=True,
        )
        pipe.execute()
    return info


def is_draining(conn: Redis, name: str) -> bool:
    """Has the worker been marked draining (its claims refuse new work)?"""
    return bool(conn.sismember(keys.DRAINING, name))
