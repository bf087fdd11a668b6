"""The fleet registry: who is working, where, on what. Entries expire when heartbeats stop."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field
from redis import Redis

from . import config
from .backend import fleet
from .errors import InvalidInput

# Timings, from the settings (TRAINYARD_HEARTBEAT_S, _WORKER_TTL_S, _DEAD_AFTER_S; fast in recovery tests):


def heartbeat_s() -> float:
    """How often a worker reports."""
    return config.current().heartbeat_s


def worker_ttl_s() -> float:
    """A worker's entry disappears this long after its last report."""
    return config.current().worker_ttl_s


def dead_after_s() -> float:
    """A claim unrefreshed this long, its worker gone: reaped."""
    return config.current().dead_after_s


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


def _ttl_ms() -> int:
    return int(worker_ttl_s() * 1000)


def register(conn: Redis, info: WorkerInfo, pid_alive) -> None:
    """Claim the worker name. Refused while a live worker holds it; a dead holder on this host
    (its pid gone) is taken over at once."""
    payload = info.model_dump_json()
    if fleet.add_worker(conn, info.name, payload, _fleet_entry(info), _ttl_ms(), only_new=True):
        return
    raw = fleet.worker_entry(conn, info.name)
    if raw is not None:
        holder = WorkerInfo.model_validate_json(raw)
        if not (holder.host == info.host and not pid_alive(holder.pid)):
            raise InvalidInput(
                f"worker name {info.name!r} is in use by pid {holder.pid} on {holder.host} "
                f"(last heartbeat {time.time() - holder.heartbeat:.0f}s ago); pick another --name"
            )
    fleet.add_worker(conn, info.name, payload, _fleet_entry(info), _ttl_ms(), only_new=False)


def _fleet_entry(info: WorkerInfo) -> str:
    """What the fleet remembers of a worker until it exits cleanly (to tell a lost one)."""
    return json.dumps({"host": info.host, "started": info.started, "queues": info.queues})


def publish_state(conn: Redis, info: WorkerInfo) -> None:
    """Announce a state change (draining, stopping) at once, beside the registry entry."""
    fleet.set_worker_state(conn, info.name, info.model_dump_json(), info.state, _ttl_ms())


def heartbeat(conn: Redis, info: WorkerInfo, claimed: dict[str, int | None], announce: bool = True) -> str | None:
    """Refresh the entry and the worker's claims (with each task's process group, so a reaper on
    this host can end what a dead worker left), in one round trip: nothing is read first (commands
    reach the worker through its inbox, and a drain is also in force through the draining set).
    ``announce``: also (re)add the name to the registry's set; it is there from ``register`` on,
    so a worker does it only now and then (a listing prunes names whose entry expired).
    Returns the command the worker has taken on (drain/stop), if any."""
    now = time.time()
    info.heartbeat = now
    pairs = [str(v) for task_id, pgid in claimed.items() for v in (task_id, pgid or "")]
    fleet.heartbeat(conn, info.name, info.model_dump_json(), _ttl_ms(), now, pairs, announce)
    return info.command


def unregister(conn: Redis, name: str) -> None:
    fleet.remove_worker(conn, name)


def lost(conn: Redis) -> dict[str, str]:
    """Workers whose entry expired without a clean exit: name -> their fleet entry (JSON:
    host, started, queues)."""
    return fleet.lost_workers(conn)


def forget(conn: Redis, name: str, seen: str) -> None:
    """Drop a lost worker from the fleet, unless a new worker took the name meanwhile."""
    fleet.forget_worker(conn, name, seen)


def get(conn: Redis, name: str) -> WorkerInfo | None:
    raw = fleet.worker_entry(conn, name)
    return WorkerInfo.model_validate_json(raw) if raw else None


def page(conn: Redis, offset: int = 0, limit: int | None = None) -> tuple[list[WorkerInfo], int]:
    """Live workers by name from ``offset`` (only the page's entries are read), and how many
    live ones there are; names whose entry expired are pruned from the registry."""
    names = fleet.worker_names(conn)
    chosen = names[offset:] if limit is None else names[offset : offset + limit]
    raws = fleet.worker_entries(conn, chosen)
    gone = [n for n, r in zip(chosen, raws) if r is None]
    fleet.prune_workers(conn, gone)
    return [WorkerInfo.model_validate_json(r) for r in raws if r is not None], len(names) - len(gone)


def list_workers(conn: Redis) -> list[WorkerInfo]:
    """Live workers, by name; names whose entry expired are pruned from the set."""
    return page(conn)[0]


def send_command(conn: Redis, name: str, command: str) -> WorkerInfo:
    """Ask a live worker to ``drain`` (finish current work, exit) or ``stop`` (abort and requeue).

    Both mark it draining in Redis in the same transaction as the command: from that moment its
    claim script refuses new work, whether or not the worker has seen the command yet."""
    if command not in ("drain", "stop"):
        raise InvalidInput(f"unknown worker command {command!r} (drain or stop)")
    raw = fleet.worker_entry(conn, name)
    if raw is None:
        raise InvalidInput(f"no live worker named {name!r}")
    info = WorkerInfo.model_validate_json(raw)
    info.command = command
    fleet.send_worker_command(conn, name, info.model_dump_json(), command, _ttl_ms())
    return info


def is_draining(conn: Redis, name: str) -> bool:
    """Has the worker been marked draining (its claims refuse new work)?"""
    return fleet.is_draining(conn, name)
