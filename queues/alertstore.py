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

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from redis import Redis

from .backend import alerting
from .errors import InvalidInput
from .queue_registry import QueueRegistry

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
    alerting.put_rule(conn, rule.id, rule.model_dump_json())
    return rule


def rules_version(conn: Redis) -> int:
    """Changes with every rule added or removed (services re-read the rules when it moves)."""
    return alerting.rules_version(conn)


def rules(conn: Redis) -> list[AlertRule]:
    return sorted((AlertRule.model_validate_json(v) for v in alerting.rule_entries(conn)), key=lambda r: r.created)


def get_rule(conn: Redis, rule_id: str) -> AlertRule:
    raw = alerting.rule_entry(conn, rule_id)
    if raw is None:
        raise InvalidInput(f"no alert rule {rule_id!r}")
    return AlertRule.model_validate_json(raw)


def rule_exists(conn: Redis, rule_id: str) -> bool:
    return alerting.rule_entry(conn, rule_id) is not None


def remove_rule(conn: Redis, rule_id: str) -> None:
    if not alerting.drop_rule(conn, rule_id):
        raise InvalidInput(f"no alert rule {rule_id!r}")


# -- raising, digests, history (the backend's: backend/alerting.py) ---------------------------------
AlertPipe = alerting.AlertPipe
history = alerting.history
