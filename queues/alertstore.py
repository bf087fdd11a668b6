"""Alert rules and the alert pipeline's Redis side: raise once, hold over the rate, digest, history.

A rule says which transitions to alert on (a task or pipeline failed/aborted/completed, a worker
lost, a queue head waiting too long, a running task stalled, a metric crossing a threshold), which
tasks it covers (project, queue, tags, user) and where messages go (Apprise URLs). Raising an alert
is one Lua call (``backend/alerts.lua``): a ``SET NX`` on (rule, subject, transition) and, only if that was
new, either a message on the outbox stream or, over the rule's rate, an entry held for the
rule's next digest. The outbox is read by a consumer group, so each message is sent by one
service and acknowledged after it was sent.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from redis import Redis

from . import keys
from .backend import scripts
from .errors import InvalidInput
from .queue_registry import QueueRegistry

SEEN_TTL_S = 30 * 24 * 3600  # how long "already alerted" is remembered
HISTORY_MAXLEN = 10_000
DIGEST_MAX_ITEMS = 2_000  # subjects listed in one digest message; the rest are counted

STATUS_EVENTS = ("failed", "aborted", "completed")
Kind = Literal["failed", "aborted", "completed", "worker_lost", "queue_wait", "stalled", "metric"]


def check_notify_url(url: str) -> str:
    """An Apprise URL Apprise can send to; else one line naming it (credentials hidden)."""
    import apprise

    if not isinstance(url, str) or not url.strip() or "\n" in url:
        raise ValueError("a notify URL must be a non-empty single line")
    if not apprise.Apprise().add(url.strip()):
        scheme = url.split("://", 1)[0] if "://" in url else url[:20]
        raise ValueError(f"notify URL scheme {scheme!r} is not one Apprise can send to (see Apprise's URL list)")
    return url.strip()


def private_url(url: str) -> str:
    """The URL with passwords and tokens masked, for lists and the web app."""
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    return plugin.url(privacy=True) if plugin else "(invalid)"


class AlertRule(BaseModel):
    """What to alert on, for which tasks, and where to send it."""

    model_config = {"extra": "forbid"}

    id: str = Field(default_factory=lambda: secrets.token_hex(4))
    name: str = ""
    on: Kind
    pipelines: bool = False  # status rules: pipeline runs instead of tasks
    project: str | None = None
    queue: str | None = None
    tags: list[str] = Field(default_factory=list)
    user: str | None = None
    minutes: float | None = None  # queue_wait: head waiting longer; stalled: no log or metric for this long
    metric: str | None = None  # metric: "title/series"
    above: float | None = None
    below: float | None = None
    notify: list[str]
    burst: int = Field(default=5, ge=1, le=1000)  # messages per window; more are held for one digest
    window_s: float = Field(default=10.0, gt=0, le=3600)
    prefix: str = ""  # put before every message (e.g. "@here")
    log_lines: int = Field(default=3, ge=0, le=50)
    created: float = Field(default_factory=time.time)

    @field_validator("notify")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise ValueError("a rule needs at least one notify URL")
        return [check_notify_url(u) for u in urls]

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if self.on in ("queue_wait", "stalled") and not (self.minutes and self.minutes > 0):
            raise ValueError(f"an {self.on} rule needs minutes > 0")
        if self.on == "metric":
            if not self.metric or "/" not in self.metric:
                raise ValueError("a metric rule needs metric as TITLE/SERIES")
            if self.above is None and self.below is None:
                raise ValueError("a metric rule needs a threshold: above or below")
        return self

    def covers(self, project: str | None, queue: str | None, tags: list[str], user: str | None) -> bool:
        """Do the rule's filters let a task with these facts through?"""
        if self.project and self.project != project:
            return False
        if self.queue and self.queue != queue:
            return False
        if self.user and self.user != user:
            return False
        return all(tag in tags for tag in self.tags)

    def public(self) -> dict[str, Any]:
        """The rule for lists and the web app: notify URLs with their secrets masked."""
        return {**self.model_dump(), "notify": [private_url(u) for u in self.notify]}


# -- rules ---------------------------------------------------------------------------------------
def add_rule(conn: Redis, rule: AlertRule) -> AlertRule:
    if rule.queue and not QueueRegistry(conn).exists(rule.queue):
        raise InvalidInput(f"no queue named {rule.queue!r}: an alert rule can only watch a queue that exists")
    with conn.pipeline(transaction=True) as pipe:
        pipe.hset(keys.ALERT_RULES, rule.id, rule.model_dump_json())
        pipe.incr(keys.ALERT_RULES_VERSION)
        pipe.execute()
    return rule


def rules_version(conn: Redis) -> int:
    """Changes with every rule added or removed (services re-read the rules when it moves)."""
    return int(conn.get(keys.ALERT_RULES_VERSION) or 0)


def rules(conn: Redis) -> list[AlertRule]:
    raw = conn.hgetall(keys.ALERT_RULES)
    return sorted((AlertRule.model_validate_json(v) for v in raw.values()), key=lambda r: r.created)


def get_rule(conn: Redis, rule_id: str) -> AlertRule:
    raw = conn.hget(keys.ALERT_RULES, rule_id)
    if raw is None:
        raise InvalidInput(f"no alert rule {rule_id!r}")
    return AlertRule.model_validate_json(raw)


def rule_exists(conn: Redis, rule_id: str) -> bool:
    return bool(conn.hexists(keys.ALERT_RULES, rule_id))


def remove_rule(conn: Redis, rule_id: str) -> None:
    with conn.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.ALERT_RULES, rule_id)
        pipe.incr(keys.ALERT_RULES_VERSION)
        removed, _ = pipe.execute()
    if not removed:
        raise InvalidInput(f"no alert rule {rule_id!r}")


# -- raising, digests, history ----------------------------------------------------------------------
class AlertPipe:
    """The Redis side of raising and sending alerts (one per service)."""

    def __init__(self, conn: Redis):
        self.conn = conn

    def raise_alert(self, rule: AlertRule, subject: str, transition: str, message: dict[str, Any]) -> int:
        """0: raised before; 1: on the outbox; 2: over the rule's rate, held for its digest."""
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
