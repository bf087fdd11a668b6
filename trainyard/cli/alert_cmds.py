"""``trainyard alerts ...``: alert rules, a test message, what was sent, and the alerts service."""

from __future__ import annotations

import time
from typing import get_args

import click

from ..connection import connect
from ..controller.alerts import service as alert_service
from ..queues import alertstore
from ..queues.alertstore import AlertRule, Kind
from ..queues.errors import InvalidInput
from .output import ago, emit_json, json_option, say, table

KINDS = get_args(Kind)


@click.group()
def alerts() -> None:
    """Alert rules (task failed/aborted/completed, worker lost, queue waiting, task stalled, metric
    threshold), sent through Apprise URLs by the alerts service."""


@alerts.command("add")
@click.option("--on", "on", required=True, metavar="|".join(KINDS), help="What to alert on.")
@click.option("--notify", "notify", multiple=True, required=True, metavar="URL", help="Apprise URL (repeatable).")
@click.option("--name", default="", help="A label for the rule.")
@click.option("--project", help="Only tasks of this project.")
@click.option("--queue", help="Only tasks of (workers serving, for worker_lost) this queue.")
@click.option("--tag", "tags", multiple=True, help="Only tasks with this tag (repeatable: all of them).")
@click.option("--user", help="Only tasks of this user.")
@click.option("--pipelines", is_flag=True, help="Status rules: pipeline runs instead of tasks.")
@click.option("--minutes", type=float, help="queue_wait: head waiting longer; stalled: no log or metric for this long.")
@click.option("--metric", help="metric rules: TITLE/SERIES.")
@click.option("--above", type=float, help="metric rules: alert when the series goes above this.")
@click.option("--below", type=float, help="metric rules: alert when the series goes below this.")
@click.option("--burst", type=int, default=5, show_default=True, help="Messages per window; more go into a digest.")
@click.option("--window", "window_s", type=float, default=10.0, show_default=True, help="Rate window (seconds).")
@click.option("--prefix", default="", help="Text before every message (e.g. '@here').")
@click.option("--log-lines", type=int, default=3, show_default=True, help="Last log lines in a task's message.")
@json_option
def add_cmd(on, notify, pipelines, window_s, as_json, **fields) -> None:
    """Add a rule; running alert services apply it within a second."""
    if on not in KINDS:
        raise InvalidInput(f"--on {on!r} is not one of: {', '.join(KINDS)}")
    fields = {k: v for k, v in fields.items() if v not in (None, ())}
    if "tags" in fields:
        fields["tags"] = list(fields["tags"])
    rule = AlertRule(on=on, notify=list(notify), pipelines=pipelines, window_s=window_s, **fields)
    alertstore.add_rule(connect(), rule)
    if as_json:
        emit_json(rule.public())
        return
    say(f"alert rule {rule.id}: on {rule.on}")


@alerts.command("list")
@json_option
def list_cmd(as_json) -> None:
    """The rules (notify URLs with their secrets masked)."""
    found = [r.public() for r in alertstore.rules(connect())]
    if as_json:
        emit_json(found)
        return
    table(
        ["id", "name", "on", "filter", "notify", "rate"],
        [
            (
                r["id"],
                r["name"],
                r["on"] + (f" {r['minutes']:g}m" if r["minutes"] else "") + _threshold(r),
                _filter(r),
                "\n".join(r["notify"]),
                f"{r['burst']}/{r['window_s']:g}s",
            )
            for r in found
        ],
    )


def _threshold(rule: dict) -> str:
    parts = [
        f" > {rule['above']:g}" if rule["above"] is not None else "",
        f" < {rule['below']:g}" if rule["below"] is not None else "",
    ]
    return (f" {rule['metric']}" + "".join(parts)) if rule["metric"] else ""


def _filter(rule: dict) -> str:
    parts = [f"{k}={rule[k]}" for k in ("project", "queue", "user") if rule[k]]
    parts += [f"tag={t}" for t in rule["tags"]]
    if rule["pipelines"]:
        parts.append("pipelines")
    return " ".join(parts)


@alerts.command("remove")
@click.argument("rule_id")
def remove_cmd(rule_id) -> None:
    """Remove a rule."""
    alertstore.remove_rule(connect(), rule_id)
    say(f"removed alert rule {rule_id}")


@alerts.command("test")
@click.argument("rule_id")
def test_cmd(rule_id) -> None:
    """Send a test message through a rule's URLs now."""
    conn = connect()
    error = alert_service.test_rule(conn, alertstore.get_rule(conn, rule_id))
    if error:
        raise InvalidInput(f"rule {rule_id}: {error}")
    say(f"rule {rule_id}: test message delivered")


@alerts.command("history")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
def history_cmd(limit, as_json) -> None:
    """What the alert services sent (or failed to send), newest first."""
    found = alertstore.history(connect(), max(1, min(limit, 10_000)))
    if as_json:
        emit_json(found)
        return
    table(
        ["when", "rule", "message", "alerts", "result", "by"],
        [
            (
                ago(e.get("at") or time.time()),
                e.get("rule"),
                e.get("title", ""),
                e.get("subjects", ""),
                "sent" if e.get("ok") else f"failed: {e.get('error')}",
                e.get("by", ""),
            )
            for e in found
        ],
    )


@alerts.command("service")
@click.option("--queue", default="services", show_default=True, help="The services queue it runs on.")
@click.option("--here", is_flag=True, help="Run it in this terminal instead (Ctrl-C stops it).")
def service_cmd(queue, here) -> None:
    """Start an alerts service. Several can run: each alert is sent once."""
    if here:
        raise SystemExit(alert_service.main())
    say(alert_service.start_service(connect(), queue))
