"""The fleet: worker registry entries, claims (which worker holds which task) and GPU holds."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator

from redis import Redis

from .. import keys
from . import scripts, streams, wake


# -- worker registry -----------------------------------------------------------------------------
def add_worker(conn: Redis, name: str, entry_json: str, fleet_json: str, ttl_ms: int, only_new: bool) -> bool:
    """Write a worker's entry (only when no live one holds the name, with ``only_new``), remember
    it in the fleet (``fleet_json``: what tells a lost worker later) and announce it with a
    ``worker_up`` event; False when ``only_new`` and the name is taken."""
    if only_new:
        if not conn.set(keys.worker(name), entry_json, nx=True, px=ttl_ms):
            return False
    else:
        conn.set(keys.worker(name), entry_json, px=ttl_ms)
    with conn.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.WORKERS, name)
        pipe.hset(keys.FLEET, name, fleet_json)
        pipe.srem(keys.DRAINING, name)  # a new worker under an old name is not draining
        streams.publish_worker(pipe, "worker_up", name, "up")
        pipe.execute()
    return True


def worker_entry(conn: Redis, name: str) -> bytes | None:
    """A live worker's entry (JSON), or None."""
    return conn.get(keys.worker(name))


def worker_entries(conn: Redis, names: list[str]) -> list[bytes | None]:
    return conn.mget([keys.worker(n) for n in names]) if names else []


def worker_names(conn: Redis) -> list[str]:
    """Registered worker names, sorted (some entries may have expired: see ``prune_workers``)."""
    return sorted(n.decode() for n in conn.smembers(keys.WORKERS))


def prune_workers(conn: Redis, gone: list[str]) -> None:
    """Forget names whose entries expired."""
    if gone:
        conn.srem(keys.WORKERS, *gone)
        conn.srem(keys.DRAINING, *gone)


def set_worker_state(conn: Redis, name: str, entry_json: str, state: str, ttl_ms: int) -> None:
    """Write the entry and announce its new state (draining, stopping) with a ``worker_state`` event."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.set(keys.worker(name), entry_json, px=ttl_ms)
        streams.publish_worker(pipe, "worker_state", name, state)
        pipe.execute()


def send_worker_command(conn: Redis, name: str, entry_json: str, command: str, ttl_ms: int) -> None:
    """Write the entry carrying ``command`` (keeping its expiry), mark the worker draining (from
    that moment its claims refuse new work, whether or not it has seen the command) and tell it
    by an event, in one transaction."""
    ttl = conn.pttl(keys.worker(name))
    with conn.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.DRAINING, name)
        pipe.set(keys.worker(name), entry_json, px=ttl if ttl and ttl > 0 else ttl_ms)
        wake.notify(conn, name, command, client=pipe)  # the worker's own inbox: no broadcast
        streams.publish_worker(pipe, "worker_command", name, command)  # for live views
        pipe.execute()


def is_draining(conn: Redis, name: str) -> bool:
    """Has the worker been marked draining (its claims refuse new work)?"""
    return bool(conn.sismember(keys.DRAINING, name))


def heartbeat(
    conn: Redis, name: str, entry_json: str, ttl_ms: int, now: float, claimed: list[str], announce: bool = True
) -> None:
    """Refresh the entry and this worker's claims (``claimed``: task id / process group pairs,
    the group "" when unknown) in one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.set(keys.worker(name), entry_json, px=ttl_ms)
        if announce:
            pipe.sadd(keys.WORKERS, name)
        if claimed:
            claim_keys = [keys.CLAIMS, keys.CLAIMS_REFRESHED]
            scripts.run(conn, "claims", "refresh", claim_keys, [name, repr(now), *claimed], client=pipe)
        pipe.execute()


def remove_worker(conn: Redis, name: str) -> None:
    with conn.pipeline(transaction=True) as pipe:
        pipe.delete(keys.worker(name))
        pipe.srem(keys.WORKERS, name)
        pipe.srem(keys.DRAINING, name)
        pipe.hdel(keys.FLEET, name)  # a clean exit: not lost
        pipe.delete(keys.inbox(name))
        streams.publish_worker(pipe, "worker_down", name, "down")
        pipe.execute()


def lost_workers(conn: Redis) -> dict[str, str]:
    """Fleet members whose entry expired without a clean exit: name -> their fleet entry (JSON)."""
    fleet = {k.decode(): v.decode() for k, v in conn.hgetall(keys.FLEET).items()}
    if not fleet:
        return {}
    names = list(fleet)
    alive = conn.mget([keys.worker(n) for n in names])
    return {n: fleet[n] for n, raw in zip(names, alive) if raw is None}


def forget_worker(conn: Redis, name: str, seen: str) -> None:
    """Drop a lost worker from the fleet, unless a new worker took the name meanwhile."""

    def drop(pipe) -> None:
        current = pipe.hget(keys.FLEET, name)
        pipe.multi()
        if current is not None and current.decode() == seen:
            pipe.hdel(keys.FLEET, name)

    conn.transaction(drop, keys.FLEET)


def worker_count(conn: Redis) -> int:
    return conn.scard(keys.WORKERS)


# -- claims ----------------------------------------------------------------------------------------
def put_claim(conn: Redis, task_id: str, claim_json: str, ts: float) -> None:
    """Record that a worker holds ``task_id`` since ``ts`` (a local pipeline controller claims its own run)."""
    scripts.run(conn, "claims", "put", [keys.CLAIMS, keys.CLAIMS_REFRESHED], [task_id, claim_json, repr(ts)])


def stale_claims(conn: Redis, before: float) -> dict[str, dict]:
    """The claims last written or refreshed at or before ``before``: ``{task id: {worker, host,
    queue, ts, pgid}}`` (an unreadable one as ``{}``). Costs what it returns, not the number of
    claims: the reaper's read."""
    flat = scripts.run(conn, "claims", "stale", [keys.CLAIMS, keys.CLAIMS_REFRESHED], [repr(before)])
    out: dict[str, dict] = {}
    for task_id, raw in zip(flat[::2], flat[1::2]):
        try:
            claim = json.loads(raw)
        except ValueError:
            claim = {}
        out[task_id.decode()] = claim if isinstance(claim, dict) else {}
    return out


def unclaimed_running(conn: Redis) -> list[str]:
    """Running tasks (their status index) that have no claim: only a failover (the claim's write,
    or a release, lost while the start survived) or a bug leaves one. One script call that walks
    the running tasks inside Redis and returns only those."""
    found = scripts.run(conn, "claims", "unclaimed", [keys.CLAIMS, keys.status_index("running")], [])
    return [i.decode() for i in found]


def adopt_claim(conn: Redis, task_id: str, claim_json: str, ts: float) -> bool:
    """Give ``task_id`` a claim since ``ts`` only while it has none (a worker's own claim always wins)."""
    claim_keys = [keys.CLAIMS, keys.CLAIMS_REFRESHED]
    return bool(scripts.run(conn, "claims", "put", claim_keys, [task_id, claim_json, repr(ts), "nx"]))


# -- GPU holds -------------------------------------------------------------------------------------
def hold_gpus(
    conn: Redis,
    host: str,
    task_id: str,
    worker: str,
    gpus: list[int],
    memory_mb: int,
    ttl_s: float,
    share: int,
    totals_mb: list[int],
) -> bool:
    """Hold ``gpus`` of ``host`` for ``task_id`` (all or none)."""
    got = scripts.run(
        conn,
        "gpus",
        "hold",
        [keys.gpu_holds(host, g) for g in gpus],
        [task_id, worker, int(memory_mb), time.time(), ttl_s, max(1, share), *totals_mb],
    )
    return int(got) == 0


def refresh_gpu_holds(conn: Redis, host: str, worker: str, holds: dict[str, tuple[list[int], int]], ttl_s: float):
    """Keep the holds of running tasks alive: ``{task id: (gpus, memory MB)}``."""
    expires = time.time() + ttl_s
    with conn.pipeline(transaction=False) as pipe:
        for task_id, (gpus, memory) in holds.items():
            for gpu in gpus:
                pipe.hset(keys.gpu_holds(host, gpu), task_id, f"{worker}|{int(memory)}|{expires:.3f}")
        pipe.execute()


def release_gpus(conn: Redis, host: str, task_id: str, worker: str, gpus: list[int]) -> None:
    """Drop ``worker``'s holds for ``task_id`` (never another worker's hold on the same task)."""
    with conn.pipeline(transaction=False) as pipe:
        scripts.run(conn, "gpus", "release", [keys.gpu_holds(host, g) for g in gpus], [task_id, worker], client=pipe)
        wake.wake_gpu_waiters(conn, host, client=pipe)
        pipe.execute()


def gpu_holders(conn: Redis, host: str, gpus: list[int]) -> dict[int, dict[str, tuple[str, int]]]:
    """Live holds per GPU: ``{gpu: {task id: (worker, declared memory MB)}}`` (expired ones left out)."""
    now = time.time()
    with conn.pipeline(transaction=False) as pipe:
        for gpu in gpus:
            pipe.hgetall(keys.gpu_holds(host, gpu))
        replies = pipe.execute()
    out: dict[int, dict[str, tuple[str, int]]] = {}
    for gpu, holds in zip(gpus, replies):
        live = {}
        for field, value in holds.items():
            worker, _, rest = value.decode().partition("|")
            memory, _, expires = rest.rpartition("|")
            if float(expires or 0) >= now:
                live[field.decode()] = (worker, int(memory or 0))
        out[gpu] = live
    return out


@contextlib.contextmanager
def reaper_lock(conn: Redis, ttl_ms: int = 5000) -> Iterator[bool]:
    """Hold the reapers' short lock (yields False when another reaper has it); let go by a
    compare-and-delete (``claims.lua``), so a lock that expired and was taken by another
    reaper is never deleted."""
    token = secrets.token_hex(8)
    held = bool(conn.set(keys.REAPER_LOCK, token, nx=True, px=ttl_ms))
    try:
        yield held
    finally:
        if held:
            scripts.run(conn, "claims", "unlock", [keys.REAPER_LOCK], [token])


def take_adoption_turn(conn: Redis, name: str, every_ms: int) -> bool:
    """The lease of the reaper's adoption pass (``reaper.adopt_unclaimed``): True for at most one
    caller per ``every_ms``, so its walk over the running tasks is made once per period fleet-wide."""
    return bool(conn.set(keys.ADOPT_LEASE, name, nx=True, px=max(1, every_ms)))


def take_reaper_turn(conn: Redis, name: str, every_ms: int) -> bool:
    """The fleet's reaper lease: True for at most one caller per ``every_ms`` (the lease is never
    let go early), so a fleet of N workers makes one reaper pass per period, not N."""
    return bool(conn.set(keys.REAPER_LEASE, name, nx=True, px=max(1, every_ms)))


def server_uptime_s(conn: Redis) -> int:
    return int(conn.info("server").get("uptime_in_seconds", 0))


# -- services (alerts, autoscaler) -----------------------------------------------------------------
def service_beat(conn: Redis, kind: str, name: str, entry_json: str, ttl_ms: int, announce: bool = False) -> None:
    """Write (or refresh) a running service's entry; with ``announce``, a ``service_up`` event too
    (it names the service in ``queue``, where waiters look for it)."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.set(keys.service(kind, name), entry_json, px=ttl_ms)
        pipe.sadd(keys.SERVICES, f"{kind}:{name}")
        if announce:
            streams.publish(pipe, "service_up", "", kind, "", "", name)
        pipe.execute()


def service_gone(conn: Redis, kind: str, name: str) -> None:
    with conn.pipeline(transaction=True) as pipe:
        pipe.delete(keys.service(kind, name))
        pipe.srem(keys.SERVICES, f"{kind}:{name}")
        pipe.execute()


def service_entries(conn: Redis, kind: str | None = None) -> list[bytes]:
    """Live services' entries (of ``kind``, when given), by kind and name; expired ones are pruned."""
    members = sorted(m.decode() for m in conn.smembers(keys.SERVICES))
    if kind is not None:
        members = [m for m in members if m.split(":", 1)[0] == kind]
    if not members:
        return []
    raws = conn.mget([keys.service(*m.split(":", 1)) for m in members])
    dead = [m for m, r in zip(members, raws) if r is None]
    if dead:
        conn.srem(keys.SERVICES, *dead)
    return [r for r in raws if r is not None]


def draining_workers(conn: Redis) -> set[str]:
    """Names of the workers marked draining (their claims refuse new work)."""
    return {m.decode() for m in conn.smembers(keys.DRAINING)}
