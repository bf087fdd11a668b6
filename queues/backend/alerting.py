"""The alert pipeline's Redis side: rules' storage, raising once, holding over the rate,
digests, history (``alerts.lua``). ``queues/alertstore.py`` holds the rule model and calls these."""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis, ResponseError

from .. import keys
from . import scripts

SEEN_TTL_S = 30 * 24 * 3600  # how long "already alerted" is remembered
HISTORY_MAXLEN = 10_000


# -- rules ---------------------------------------------------------------------------------------
def put_rule(conn: Redis, rule_id: str, rule_json: str) -> None:
    """Store a rule and move the rules' version (services re-read the rules when it moves)."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.hset(keys.ALERT_RULES, rule_id, rule_json)
        pipe.incr(keys.ALERT_RULES_VERSION)
        pipe.execute()


def drop_rule(conn: Redis, rule_id: str) -> bool:
    """Remove a rule (moving the version); False when there was none."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.ALERT_RULES, rule_id)
        pipe.incr(keys.ALERT_RULES_VERSION)
        removed, _ = pipe.execute()
    return bool(removed)


def rules_version(conn: Redis) -> int:
    return int(conn.get(keys.ALERT_RULES_VERSION) or 0)


def rule_entries(conn: Redis) -> list[bytes]:
    return list(conn.hgetall(keys.ALERT_RULES).values())


def rule_entry(conn: Redis, rule_id: str) -> bytes | None:
    return conn.hget(keys.ALERT_RULES, rule_id)


# -- raising, digests, history ---------------------------------------------------------------------
class AlertPipe:
    """The Redis side of raising and sending alerts (one per service)."""

    def __init__(self, conn: Redis):
        self.conn = conn

    def raise_alert(self, rule: Any, subject: str, transition: str, message: dict[str, Any]) -> int:
        """0: raised before; 1: on the outbox; 2: over the rule's rate, held for its digest.
        ``rule`` is an ``alertstore.AlertRule`` (its id, burst and window)."""
        now = time.time()
        window = int(now // rule.window_s)
        digest_at = (window + 1) * rule.window_s
        summary = {k: message.get(k) for k in ("subject", "name", "status", "project", "line")}
        return int(
            scripts.run(
                self.conn,
                "alerts",
                "raise",
                [
                    keys.alert_seen(rule.id, subject, transition),
                    keys.ALERT_OUTBOX,
                    keys.alert_rate(rule.id, window),
                    keys.alert_held(rule.id),
                    keys.ALERT_DUE,
                ],
                [
                    SEEN_TTL_S,
                    json.dumps({**message, "rule": rule.id}),
                    json.dumps(summary),
                    rule.burst,
                    int(rule.window_s) + 60,
                    rule.id,
                    repr(digest_at),
                ],
            )
        )

    def next_digest(self) -> float | None:
        """When the earliest held digest is due (None: none held)."""
        first = self.conn.zrange(keys.ALERT_DUE, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def flush_digests(self, now: float) -> int:
        """Turn every due rule's held alerts into one digest message each; returns how many alerts."""
        moved = 0
        for raw in self.conn.zrangebyscore(keys.ALERT_DUE, "-inf", now):
            rule_id = raw.decode()
            moved += int(
                scripts.run(
                    self.conn,
                    "alerts",
                    "digest",
                    [keys.ALERT_DUE, keys.alert_held(rule_id), keys.ALERT_OUTBOX],
                    [rule_id, now],
                )
            )
        return moved

    def record(self, entry: dict[str, Any]) -> None:
        self.conn.xadd(keys.ALERT_HISTORY, {"data": json.dumps(entry)}, maxlen=HISTORY_MAXLEN, approximate=True)


def history(conn: Redis, count: int = 50) -> list[dict[str, Any]]:
    """The newest ``count`` sent (or failed) messages, newest first."""
    return [{"id": i.decode(), **json.loads(f[b"data"])} for i, f in conn.xrevrange(keys.ALERT_HISTORY, count=count)]


# -- the services' consumer group on the event stream and the outbox ---------------------------------
def ensure_group(conn: Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (starting at its end) unless it exists."""
    try:
        conn.xgroup_create(stream, group, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def read_group(
    conn: Redis, group: str, consumer: str, cursors: dict[str, str], count: int, block_ms: int | None = None
):
    """XREADGROUP: ``(stream, entries)`` pairs (``>``: new entries; ``0``: this consumer's pending)."""
    return conn.xreadgroup(group, consumer, cursors, count=count, block=block_ms) or []


def ack(conn: Redis, stream: str, group: str, *entry_ids) -> None:
    if entry_ids:
        conn.xack(stream, group, *entry_ids)


def take_over(conn: Redis, stream: str, group: str, consumer: str, min_idle_ms: int, count: int) -> list:
    """Claim entries another consumer left pending longer than ``min_idle_ms`` (XAUTOCLAIM)."""
    _, entries, *_ = conn.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms, count=count)
    return [e for e in entries if e and e[1] is not None]


def prune_consumers(conn: Redis, stream: str, group: str, keep: str, idle_ms: int) -> None:
    """Drop the group's consumers that hold nothing and were idle ``idle_ms`` (services gone)."""
    for consumer in conn.xinfo_consumers(stream, group):
        name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
        if consumer["pending"] == 0 and consumer["idle"] > idle_ms and name != keep:
            conn.xgroup_delconsumer(stream, group, name)
