"""The autoscaler: starts workers when tasks wait with no idle worker able to take them, and
drains and stops them after an idle timeout, without ever racing a claim.

Event-driven: it blocks on the event stream and decides the moment a task is queued (or a worker
comes or goes), and at least every ``TICK_S`` for the timeouts. Scale-down is an atomic drain:
``workers.send_command(drain)`` marks the worker draining in Redis, from which moment its claim
script refuses new work; the machine is stopped only after the worker has exited (it finishes
a task it took just before). A task queued meanwhile stays queued and counts as waiting work.
Several autoscalers may run: one holds the lease and acts, the others stand by.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
import time

import redis
from redis import Redis

from ...queues import config, scalestore, services, workers
from ...queues.backend import fleet, streams
from ...queues.backend import queues as queue_lists
from ...queues.connection import default_connection
from ...queues.scalestore import Instance, ScalerConfig
from ..services import enqueue_service, run_until_signalled
from .drivers import Driver, make_drivers

log = logging.getLogger("trainyard.autoscale")
TICK_S = 1.0
LEASE_S = 5.0
SWEEP_S = 30.0  # how often machines that no instance record names (orphans) are looked for
SERVICE_MODULE = "trainyard.controller.autoscale.service"


class Autoscaler:
    def __init__(self, conn: Redis, drivers: dict[str, Driver], name: str | None = None):
        self.conn = conn
        self.drivers = drivers
        self.name = name or f"{socket.gethostname()}-autoscale-{os.getpid()}"
        self.stop_event = threading.Event()
        self._capped: dict[str, str] = {}  # queue -> reason last logged (logged once per change)
        self._swept = 0.0

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        services.announce(self.conn, "autoscaler", self.name, self._facts(False))
        print(f"autoscaler {self.name} started", flush=True)
        cursor = streams.last_event_id(self.conn)
        try:
            while not self.stop_event.is_set():
                try:
                    leading = scalestore.lead(self.conn, self.name, LEASE_S)
                    services.beat(self.conn, "autoscaler", self.name, self._facts(leading))
                    if leading:
                        self.reconcile(time.time())
                    for event in streams.follow_events(self.conn, cursor, TICK_S):
                        cursor = event.id
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("Redis unreachable (%s); retrying", exc)
                    self.stop_event.wait(1.0)
        finally:
            scalestore.resign(self.conn, self.name)
            services.gone(self.conn, "autoscaler", self.name)

    def _facts(self, leading: bool) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "leading": leading}

    # -- one decision round --------------------------------------------------------------------------
    def reconcile(self, now: float) -> None:
        config = scalestore.load_config(self.conn)
        if config is None:
            return
        live = {w.name: w for w in workers.list_workers(self.conn)}
        draining = fleet.draining_workers(self.conn)
        current = [i for i in scalestore.instances(self.conn) if self._follow(i, config, live, now)]
        for queue, entries in config.queues.items():
            self._scale_up(config, queue, entries, current, live, draining)
        if now - self._swept >= SWEEP_S:
            self._swept = now
            self.sweep(config, current)

    def sweep(self, config: ScalerConfig, current: list[Instance]) -> None:
        """Stop machines a driver lists that no instance names (a start call that failed after
        the machine was made, a record lost): nothing runs, or costs, unaccounted."""
        known = {i.cloud_id for i in current}
        for kind in sorted({r.driver for r in config.resources.values()}):
            driver = self.drivers.get(kind)
            try:
                orphans = [c for c in driver.list() if c not in known] if driver is not None else []
            except Exception as exc:  # noqa: BLE001 - the driver's API failed: next sweep
                log.warning("could not list %s machines: %s", kind, exc)
                continue
            for cloud_id in orphans:
                with contextlib.suppress(Exception):
                    driver.spin_down(cloud_id)
                scalestore.decide(self.conn, "-", "orphan stopped", f"{kind} machine {cloud_id} had no instance record")

    def _follow(self, inst: Instance, config: ScalerConfig, live: dict, now: float) -> bool:
        """Move one instance along; False once it is gone."""
        worker = live.get(inst.worker)
        driver = self.drivers[inst.driver]
        if inst.state == "starting":
            if worker is not None:
                inst.state, inst.registered = "running", now
                scalestore.save_instance(self.conn, inst)
                scalestore.decide(self.conn, inst.queue, "registered", f"worker {inst.worker} took its place")
                return True
            if now - inst.started > config.spin_up_timeout_s:
                return self._stop(
                    inst, "gave up", f"worker {inst.worker} did not register in {config.spin_up_timeout_s:g}s"
                )
            if inst.cloud_id and not driver.alive(inst.cloud_id):
                tail = driver.console_log(inst.cloud_id).strip().splitlines()[-1:] or ["no output"]
                return self._stop(
                    inst, "failed", f"machine of {inst.worker} ended before its worker registered: {tail[0][:200]}"
                )
            return True
        if worker is None:
            if inst.state == "draining":
                return self._stop(inst, "stopped", f"worker {inst.worker} drained and exited")
            return self._stop(inst, "lost", f"worker {inst.worker} stopped reporting; its machine is stopped")
        if inst.state == "running":
            idle = worker.state == "idle" and not worker.current
            changed = False
            if not idle and inst.idle_since is not None:
                inst.idle_since, changed = None, True
            elif idle and inst.idle_since is None:
                inst.idle_since, changed = now, True
            if idle and now - (inst.idle_since or now) >= config.idle_timeout_s and not self._waiting(worker.queues):
                workers.send_command(self.conn, inst.worker, "drain")  # its claim refuses new work from now on
                inst.state, inst.drained, changed = "draining", now, True
                idle_s = now - (inst.idle_since or now)
                scalestore.decide(self.conn, inst.queue, "drain", f"worker {inst.worker} idle for {idle_s:.0f}s")
            if changed:
                scalestore.save_instance(self.conn, inst)
        return True

    def _stop(self, inst: Instance, action: str, reason: str) -> bool:
        if inst.cloud_id:
            try:
                self.drivers[inst.driver].spin_down(inst.cloud_id)
            except Exception as exc:  # noqa: BLE001 - the driver's API failed: try again next round
                log.warning("could not stop %s (%s): %s", inst.worker, inst.cloud_id, exc)
                return True
        scalestore.drop_instance(self.conn, inst.id)
        scalestore.decide(self.conn, inst.queue, action, reason, instance=inst.id, worker=inst.worker)
        return False

    def _waiting(self, queues: list[str]) -> bool:
        return queue_lists.any_waiting(self.conn, queues)

    def _scale_up(self, config: ScalerConfig, queue: str, entries, current: list[Instance], live, draining) -> None:
        waiting = queue_lists.length(self.conn, queue)
        if not waiting:
            self._capped.pop(queue, None)
            return
        idle = sum(
            1
            for w in live.values()
            if queue in w.queues and w.state == "idle" and not w.current and w.name not in draining
        )
        starting = sum(1 for i in current if i.queue == queue and i.state == "starting")
        need = waiting - idle - starting
        for entry in entries:
            resource = config.resources[entry.resource]
            while need > 0:
                count = sum(1 for i in current if i.resource == entry.resource)
                if count >= entry.max:
                    break
                cost = sum(i.price for i in current)
                if config.cost_cap_per_hour is not None and cost + resource.hourly_price > config.cost_cap_per_hour:
                    reason = (
                        f"{need} task(s) wait but another {entry.resource} ({resource.hourly_price:g}/h) would pass "
                        f"the cost cap ({cost:g} + {resource.hourly_price:g} > {config.cost_cap_per_hour:g}/h)"
                    )
                    if self._capped.get(queue) != reason:
                        self._capped[queue] = reason
                        scalestore.decide(self.conn, queue, "capped", reason)
                    return
                started = self._spin_up(config, queue, entry.resource, waiting, idle)
                if started is None:
                    return
                current.append(started)
                need -= 1

    def _spin_up(
        self, config: ScalerConfig, queue: str, resource_name: str, waiting: int, idle: int
    ) -> Instance | None:
        resource = config.resources[resource_name]
        worker = f"{config.worker_prefix}-{resource_name}-{secrets.token_hex(3)}"
        inst = Instance(
            id=secrets.token_hex(6),
            resource=resource_name,
            queue=queue,
            worker=worker,
            driver=resource.driver,
            price=resource.hourly_price,
        )
        scalestore.save_instance(self.conn, inst)  # recorded first: a restart knows it even if we die now
        try:
            inst.cloud_id = self.drivers[resource.driver].spin_up(resource, worker, queue)
        except Exception as exc:  # noqa: BLE001 - a driver error is a decision, not a crash
            scalestore.drop_instance(self.conn, inst.id)
            scalestore.decide(self.conn, queue, "spin-up failed", f"{resource_name}: {type(exc).__name__}: {exc}"[:500])
            return None
        scalestore.save_instance(self.conn, inst)
        reason = f"{waiting} task(s) waiting, {idle} idle worker(s) able to take them"
        scalestore.decide(self.conn, queue, "spin up", reason, instance=inst.id, worker=worker, resource=resource_name)
        return inst


def start_service(conn: Redis, queue: str = "services") -> str:
    """An autoscaler as a controller task on ``queue``; returns its task id."""
    return enqueue_service(conn, "autoscaler", SERVICE_MODULE, "autoscaler", queue)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = config.current()
    drivers = make_drivers(settings.home, settings.redis_url or "")
    scaler = Autoscaler(default_connection(), drivers)
    return run_until_signalled(scaler, "autoscaler")


if __name__ == "__main__":
    sys.exit(main())
