"""The alerts service: event-driven detection and exactly-once delivery, any number running.

Each service reads the event stream and the outbox through one consumer group (``alerts``), so
every event is examined by one service and every message sent by one service; a service
acknowledges an event after raising its alerts and a message after sending it. A service killed
mid-way leaves its unacknowledged entries pending; another one claims them after
``EVENT_CLAIM_S``/``SEND_CLAIM_S`` of idleness and finishes the work. Raising is idempotent
(``SET NX`` per rule, subject and transition), so an event examined twice alerts once; the group's
position survives restarts, so nothing that happened while no service ran is skipped.

What has no event (a worker that stopped reporting, a queue head waiting, a task with no log or
metric, a metric summary crossing a threshold) is checked on a tick of at most ``TICK_S``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time

import apprise
import redis
from redis import Redis

from ...queues import events, keys, services, workers
from ...queues.alertstore import STATUS_EVENTS, AlertPipe, AlertRule, rules, rules_version
from ...queues.backend import alerting, records, streams
from ...queues.backend import queues as queue_lists
from ...queues.connection import default_connection
from ...queues.errors import TaskNotFound
from ...queues.record import TaskRecord, TaskStatus
from ...queues.store import TaskStore
from .. import run_store
from ..services import enqueue_service, run_until_signalled
from . import message

log = logging.getLogger("trainyard.alerts")
GROUP = keys.ALERTS_GROUP
TICK_S = 1.0  # the longest wait between checks of what has no event
EVENT_CLAIM_S = 5.0  # an event a service took and left this long (it died) is taken over
SEND_CLAIM_S = 20.0  # likewise a message (longer than one send's time-outs together)
RETRY_MAX_S = 60.0
CHECK_S = 0.25  # the no-event checks run at most this often, however many events arrive
PRUNE_S = 600.0  # how often consumers of services long gone are dropped from the group
GONE_CONSUMER_MS = 3_600_000
SERVICE_MODULE = "trainyard.controller.alerts.service"


class AlertService:
    def __init__(self, conn: Redis, name: str | None = None):
        self.conn = conn
        self.name = name or f"{socket.gethostname()}-alerts-{os.getpid()}"
        self.pipe = AlertPipe(conn)
        self.store = TaskStore(conn)
        self.stop_event = threading.Event()
        self._rules: list[AlertRule] = []
        self._rules_version = -1
        self._senders: dict[str, tuple[str, apprise.Apprise]] = {}
        self._retry_at = 0.0  # when to try again the messages whose sending failed
        self._failures = 0
        self._claimed_at = 0.0
        self._checked_at = 0.0
        self._check_due = 0.0
        self._pruned_at = time.time()
        self.sent = 0

    # -- the loop --------------------------------------------------------------------------------
    def setup(self) -> None:
        apprise.Apprise.instantiate("json://localhost")  # loads Apprise's plugins now, not at the first alert
        for stream in (keys.EVENTS, keys.ALERT_OUTBOX):
            alerting.ensure_group(self.conn, stream, GROUP)

    def run(self) -> None:
        self.setup()
        services.announce(self.conn, "alerts", self.name, self._facts())
        print(f"alert service {self.name} started", flush=True)
        try:
            while not self.stop_event.is_set():
                try:
                    self.step()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("Redis unreachable (%s); retrying", exc)
                    self.stop_event.wait(1.0)
        finally:
            services.gone(self.conn, "alerts", self.name)

    def step(self) -> None:
        """One round: checks without events (at most every CHECK_S), due digests, taken-over work,
        then block for new entries."""
        now = time.time()
        if now - self._checked_at >= CHECK_S:
            self._checked_at = now
            services.beat(self.conn, "alerts", self.name, self._facts())
            self._check_due = now + min(TICK_S, self.check(now))
            self.pipe.flush_digests(now)
        wait = max(0.0, min(self._check_due, self._checked_at + TICK_S) - now)
        due = self.pipe.next_digest()
        if due is not None:
            wait = min(wait, max(0.0, due - time.time()))
        if now - self._claimed_at >= 1.0:
            self._claimed_at = now
            self._take_over()
        if now - self._pruned_at >= PRUNE_S:
            self._pruned_at = now
            self._prune_consumers()
        if self._failures and time.time() >= self._retry_at:
            self._send_pending()
        reply = alerting.read_group(
            self.conn,
            GROUP,
            self.name,
            {keys.EVENTS: ">", keys.ALERT_OUTBOX: ">"},
            count=500,
            block_ms=streams.block_ms(self.conn, max(wait, 0.001)),
        )
        for stream, entries in reply:
            if stream.decode() == keys.EVENTS:
                self._on_events(entries)
            else:
                self._send(entries)

    def _facts(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "sent": self.sent}

    # -- events ------------------------------------------------------------------------------------
    def rules(self) -> list[AlertRule]:
        """The rules as they are now: re-read when their version moved (one GET per call), so an
        event written after a rule was added is always judged by it."""
        version = rules_version(self.conn)
        if version != self._rules_version:
            self._rules, self._rules_version = rules(self.conn), version
        return self._rules

    def _on_events(self, entries: list) -> None:
        active = self.rules()  # read after the events arrived: a rule added before them applies
        for entry_id, fields in entries:
            self.on_event(events.Event.from_fields(entry_id, fields), active)
        alerting.ack(self.conn, keys.EVENTS, GROUP, *[e[0] for e in entries])

    def on_event(self, event: events.Event, active: list[AlertRule]) -> None:
        if event.kind not in ("status", "pipeline") or event.status not in STATUS_EVENTS:
            return
        pipeline = event.kind == "pipeline"
        wanted = [r for r in active if r.on == event.status and r.pipelines == pipeline]
        if not wanted:
            return
        if pipeline:
            try:
                run = run_store.load(self.conn, event.task_id)
            except Exception:  # noqa: BLE001 - a run deleted meanwhile
                return
            for rule in wanted:
                if rule.project in (None, event.project):
                    msg = message.for_pipeline(rule, run.id, run.name, event.status)
                    self.pipe.raise_alert(rule, run.id, event.status, msg)
            return
        try:
            record = self.store.get(event.task_id)
        except TaskNotFound:
            return
        for rule in wanted:
            if rule.covers(record.project, record.execution.queue, record.tags, record.user):
                transition = f"{event.status}#{record.runtime.attempt}"
                self.pipe.raise_alert(rule, record.id, transition, message.for_task(rule, record, event.status))

    # -- what has no event -------------------------------------------------------------------------
    def check(self, now: float) -> float:
        """Lost workers, waiting queue heads, stalled tasks, metric thresholds; returns how long
        until the next queue head is due (at most TICK_S)."""
        active = self.rules()
        self._check_workers([r for r in active if r.on == "worker_lost"])
        wait = self._check_queues([r for r in active if r.on == "queue_wait"], now)
        running_rules = [r for r in active if r.on in ("stalled", "metric")]
        if running_rules:
            self._check_running(running_rules, now)
        return wait

    def _check_workers(self, lost_rules: list[AlertRule]) -> None:
        for name, raw in workers.lost(self.conn).items():
            entry = json.loads(raw)
            for rule in lost_rules:
                if rule.queue and rule.queue not in entry.get("queues", []):
                    continue
                msg = message.for_worker(rule, name, entry.get("host", "?"), entry.get("queues", []))
                self.pipe.raise_alert(rule, f"worker:{name}", f"lost#{entry.get('started')}", msg)
            workers.forget(self.conn, name, raw)

    def _check_queues(self, wait_rules: list[AlertRule], now: float) -> float:
        wait = TICK_S
        if not wait_rules:
            return wait
        all_queues = queue_lists.names(self.conn)
        for rule in wait_rules:
            for queue in [rule.queue] if rule.queue else all_queues:
                head = queue_lists.head(self.conn, queue)
                if head is None:
                    continue
                try:
                    record = self.store.get(head)
                except TaskNotFound:
                    continue
                if record.status != TaskStatus.QUEUED or record.queued_at is None:
                    continue
                if not rule.covers(record.project, queue, record.tags, record.user):
                    continue
                waited = now - record.queued_at
                limit = (rule.minutes or 0) * 60
                if waited >= limit:
                    msg = message.for_queue(rule, queue, record, waited)
                    self.pipe.raise_alert(rule, f"queue:{queue}", f"wait#{record.id}#{record.queued_at!r}", msg)
                else:
                    wait = min(wait, limit - waited)
        return wait

    def _check_running(self, running_rules: list[AlertRule], now: float) -> None:
        ids = records.index_oldest(self.conn, keys.status_index(TaskStatus.RUNNING.value), 10_000)
        running = [r for r in self.store.get_many(ids) if r is not None and r.status == TaskStatus.RUNNING]
        if not running:
            return
        stalled = [r for r in running_rules if r.on == "stalled"]
        last_seen: dict[str, float] = {}
        if stalled:
            activity = streams.last_activity(self.conn, [r.id for r in running])
            for record, newest in zip(running, activity):
                stamps = [record.started or 0.0] + [int(entry.split("-")[0]) / 1000 for entry in newest]
                last_seen[record.id] = max(stamps)
        for rule in running_rules:
            for record in running:
                if not rule.covers(record.project, record.execution.queue, record.tags, record.user):
                    continue
                attempt = record.runtime.attempt
                if rule.on == "stalled":
                    quiet = now - last_seen[record.id]
                    if quiet >= (rule.minutes or 0) * 60:
                        what = f"stalled (no log or metric for {quiet / 60:.1f} minutes)"
                        self.pipe.raise_alert(
                            rule, record.id, f"stalled#{attempt}", message.for_task(rule, record, what)
                        )
                    continue
                self._check_metric(rule, record, attempt)

    def _check_metric(self, rule: AlertRule, record: TaskRecord, attempt: int) -> None:
        title, series = (rule.metric or "/").split("/", 1)
        summary = record.metrics.get(title, {}).get(series)
        if summary is None:
            return
        if rule.above is not None and summary.max > rule.above:
            what = f"metric {rule.metric} rose above {rule.above:g} (max {summary.max:g})"
            self.pipe.raise_alert(rule, record.id, f"above#{attempt}", message.for_task(rule, record, what))
        if rule.below is not None and summary.min < rule.below:
            what = f"metric {rule.metric} fell below {rule.below:g} (min {summary.min:g})"
            self.pipe.raise_alert(rule, record.id, f"below#{attempt}", message.for_task(rule, record, what))

    # -- sending -------------------------------------------------------------------------------------
    def _take_over(self) -> None:
        """Claim what dead services left: events to examine and messages to send."""
        entries = alerting.take_over(self.conn, keys.EVENTS, GROUP, self.name, int(EVENT_CLAIM_S * 1000), 500)
        if entries:
            self._on_events(entries)
        entries = alerting.take_over(self.conn, keys.ALERT_OUTBOX, GROUP, self.name, int(SEND_CLAIM_S * 1000), 100)
        if entries:
            self._send(entries)

    def _prune_consumers(self) -> None:
        """Drop the group's consumers that hold nothing and were idle an hour (services gone)."""
        for stream in (keys.EVENTS, keys.ALERT_OUTBOX):
            alerting.prune_consumers(self.conn, stream, GROUP, self.name, GONE_CONSUMER_MS)

    def _send_pending(self) -> None:
        """Try again the messages this service could not send (still pending on it)."""
        for _, entries in alerting.read_group(self.conn, GROUP, self.name, {keys.ALERT_OUTBOX: "0"}, count=100):
            self._send([e for e in entries if e[1]])

    def _send(self, entries: list) -> None:
        failed = 0
        by_id = {r.id: r for r in self.rules()}
        for entry_id, fields in entries:
            data = json.loads(fields[b"data"])
            rule = by_id.get(data.get("rule")) or self._fresh_rule(data.get("rule"))
            if rule is None:
                self.pipe.record({"rule": data.get("rule"), "ok": False, "error": "rule removed", "at": time.time()})
                alerting.ack(self.conn, keys.ALERT_OUTBOX, GROUP, entry_id)
                continue
            if data.get("digest"):
                items = [json.loads(i) for i in data["items"]]
                msg, subjects = message.digest(rule, items), len(items)
            else:
                msg, subjects = data, 1
            error = self.deliver(rule, msg["title"], msg["body"], msg.get("type", "info"))
            entry = {"rule": rule.id, "title": msg["title"], "subjects": subjects, "by": self.name, "at": time.time()}
            if error is None:
                alerting.ack(self.conn, keys.ALERT_OUTBOX, GROUP, entry_id)
                self.pipe.record({**entry, "ok": True, "digest": bool(data.get("digest"))})
                self.sent += 1
            else:
                failed += 1
                self.pipe.record({**entry, "ok": False, "error": error})
        if failed:
            self._failures += 1
            self._retry_at = time.time() + min(RETRY_MAX_S, 2.0**self._failures)
        elif entries:
            self._failures = 0

    def _fresh_rule(self, rule_id: str | None) -> AlertRule | None:
        self._rules_version = -1
        return {r.id: r for r in self.rules()}.get(rule_id or "")

    def deliver(self, rule: AlertRule, title: str, body: str, kind: str = "info") -> str | None:
        """Send through the rule's Apprise URLs; None when every one took it, else why not."""
        version = rule.model_dump_json()
        cached = self._senders.get(rule.id)
        if cached is None or cached[0] != version:
            sender = apprise.Apprise()
            for url in rule.notify:
                sender.add(url)
            cached = self._senders[rule.id] = (version, sender)
        notify_type = {"failure": apprise.NotifyType.FAILURE, "warning": apprise.NotifyType.WARNING}.get(
            kind, apprise.NotifyType.INFO
        )
        ok = cached[1].notify(body=body, title=title, notify_type=notify_type)
        return None if ok else "a notify URL did not accept the message (see the service's log)"


def test_rule(conn: Redis, rule: AlertRule) -> str | None:
    """Send a test message through a rule's URLs now; None when delivered, else why not."""
    return AlertService(conn, name="test").deliver(
        rule, f"trainyard: test of alert rule {rule.name or rule.id}", f"rule {rule.id} ({rule.on}) can reach you."
    )


def start_service(conn: Redis, queue: str = "services") -> str:
    """An alert service as a controller task on ``queue``; returns its task id."""
    return enqueue_service(conn, "alert service", SERVICE_MODULE, "alert-service", queue)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    service = AlertService(default_connection())
    return run_until_signalled(service, "alert service")


if __name__ == "__main__":
    sys.exit(main())
