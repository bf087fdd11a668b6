"""What an alert says: the task's name, status, error line, last log lines and web link."""

from __future__ import annotations

from typing import Any

from ...queues import config
from ...queues.alertstore import DIGEST_MAX_ITEMS, AlertRule
from ...queues.record import TaskRecord

MAX_LOG_CHARS = 2048  # of the last log lines, as ClearML's Slack monitor keeps


def web_link(path: str) -> str:
    """A link into the web app when ``TRAINYARD_WEB_URL`` says where it is, else ''."""
    base = config.current().web_url
    return f"{base}/#/{path}" if base else ""


def _title(rule: AlertRule, text: str) -> str:
    return f"{rule.prefix} {text}".strip()


def for_task(rule: AlertRule, record: TaskRecord, what: str) -> dict[str, Any]:
    """A message about a task (``what``: failed, aborted, completed, stalled, a metric crossing)."""
    rt = record.runtime
    lines = [
        f"task {record.id} ({record.project}) {what}",
        f"queue {record.execution.queue or '-'}, worker {rt.worker or '-'}, attempt {rt.attempt}",
    ]
    error = (rt.error or record.status_message or "").splitlines()
    if error:
        lines.append(f"error: {error[0][:500]}")
    link = web_link(f"tasks/{record.id}")
    if link:
        lines.append(link)
    if rule.log_lines and rt.log_tail:
        tail = "\n".join(rt.log_tail[-rule.log_lines :])[-MAX_LOG_CHARS:]
        lines += ["last log lines:", tail]
    return {
        "subject": record.id,
        "name": record.name,
        "status": what,
        "project": record.project,
        "line": error[0][:200] if error else "",
        "title": _title(rule, f"trainyard: task {record.name!r} {what}"),
        "body": "\n".join(lines),
        "type": "info" if what == "completed" else "failure",
    }


def for_pipeline(rule: AlertRule, run_id: str, name: str, status: str) -> dict[str, Any]:
    lines = [f"pipeline run {run_id} {status}"]
    link = web_link(f"runs/{run_id}")
    if link:
        lines.append(link)
    return {
        "subject": run_id,
        "name": name,
        "status": status,
        "project": "",
        "line": "",
        "title": _title(rule, f"trainyard: pipeline {name!r} {status}"),
        "body": "\n".join(lines),
        "type": "info" if status == "completed" else "failure",
    }


def for_worker(rule: AlertRule, name: str, host: str, queues: list[str]) -> dict[str, Any]:
    body = f"worker {name} on {host} (queues {', '.join(queues) or '-'}) stopped reporting: lost"
    return {
        "subject": f"worker:{name}",
        "name": name,
        "status": "lost",
        "project": "",
        "line": "",
        "title": _title(rule, f"trainyard: worker {name!r} lost"),
        "body": body,
        "type": "failure",
    }


def for_queue(rule: AlertRule, queue: str, record: TaskRecord, waited_s: float) -> dict[str, Any]:
    lines = [f"queue {queue}: task {record.id} ({record.name!r}) first in line for {waited_s / 60:.1f} minutes"]
    link = web_link(f"queues/{queue}")
    if link:
        lines.append(link)
    return {
        "subject": f"queue:{queue}",
        "name": queue,
        "status": "waiting",
        "project": record.project,
        "line": "",
        "title": _title(rule, f"trainyard: queue {queue!r} stalled"),
        "body": "\n".join(lines),
        "type": "warning",
    }


def digest(rule: AlertRule, items: list[dict[str, Any]]) -> dict[str, str]:
    """One message for the alerts a rule held over its rate: every subject listed (up to a bound)."""
    shown = items[:DIGEST_MAX_ITEMS]
    lines = [f"{len(items)} alerts of rule {rule.name or rule.id} ({rule.on}) arrived faster than its rate:"]
    lines += [f"- {i.get('subject')} {i.get('name')!r} {i.get('status')} {i.get('line') or ''}".rstrip() for i in shown]
    if len(items) > len(shown):
        lines.append(f"... and {len(items) - len(shown)} more")
    return {
        "title": _title(rule, f"trainyard: {len(items)} alerts ({rule.on}) in a digest"),
        "body": "\n".join(lines),
        "type": "failure",
    }
