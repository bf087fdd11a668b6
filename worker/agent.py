"""The worker: registers, takes tasks from its queues the moment they arrive, runs them, reports.

An idle worker blocks in Redis (one BLPOP) on its own inbox and on the bells of the queues it
serves (``queues/backend/wake.py``): each queued task rings its queue's bell once, and Redis
hands that token to exactly one waiting worker, which then tries an atomic claim. A worker that
cannot take the task it was woken for (not enough free GPUs, the line held for a bigger task)
passes the token on and stops listening to that queue until a GPU of its host comes free or one
of its own tasks ends; a queue at its concurrency limit is rung again when one of its tasks ends.
Abort, drain and stop reach the worker through its inbox. There is no broadcast and no polling:
a slow backstop only covers a token that was lost. Heartbeats keep the worker's registry entry and
claims alive, back up drain/stop commands and abort flags, and run the reaper that recovers tasks
of dead workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

from ..queues import reaper, workers
from ..queues.backend import queues as queue_lists
from ..queues.backend import wake
from ..queues.dispatch import DRAINING, Dispatcher
from ..queues.errors import InvalidInput
from ..queues.queue_registry import QueueRegistry
from ..queues.record import TaskRecord
from ..queues.store import TaskStore
from . import guard, leftovers
from .artifacts import ArtifactStore
from .executor import RunSettings, TaskRun
from .gpu_holds import GpuHolds
from .gpus import default_nvml
from .launch import LaunchSpec
from .modes import ModeSettings
from .monitor import Monitor
from .preparer import Preparer
from .reporter import Reporter
from .scheduler import Scheduler, SchedulerConfig
from .secrets import Redactor, known_values

log = logging.getLogger("trainyard.worker")
ANNOUNCE_EVERY = 10  # heartbeats between re-adding the name to the registry's set
BACKSTOP_S = 30.0  # an idle worker re-reads its queues this often even when nothing woke it (a lost token)
BACKSTOP_MIN_AGE_S = 5.0  # a worker woken by its backstop leaves alone tasks queued less long ago
RETRY_S = 2.0  # after an error while taking work
REAP_EVERY_S = 5.0


CONNECTIONS = 2  # Redis connections of a worker process: its blocking wait, and one for everything else


def default_name() -> str:
    """A worker's name when ``--name`` gives none: host, process id and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


# A worker that has not reached Redis for this long ends its tasks: from dead_after_s() on, a reaper
# may declare it dead and another worker may start them, and a task must never run twice at once.
def fence_after_s() -> float:
    return workers.dead_after_s() / 2


def fence_grace_s() -> float:
    return workers.dead_after_s() / 4


@dataclass
class WorkerConfig:
    queues: list[str]
    gpus: list[int] = field(default_factory=list)
    name: str | None = None
    order_fairness: bool = False
    burst: bool = False
    slots: int = 1
    mode: str = "local"
    grace_s: float = 10.0
    create_queues: bool = False
    keep_runs: bool = False
    home: Path = Path.home() / ".trainyard"
    artifacts_url: str = ""
    redis_url: str | None = None
    docker_image: str | None = None
    docker_network: str | None = None
    env_cache_size: int = 20
    installer: str = "auto"
    queue_gpus: dict[str, int] = field(default_factory=dict)  # --queue dual=2: GPUs per task from that queue
    gpu_share: int = 1  # tasks one GPU may hold at once (--gpu-share)
    backfill_s: float = 30.0  # how long a queue head that does not fit lets lower queues backfill
    foreign_mem_mb: int = 512  # GPUs used by foreign processes beyond this are left alone (< 0: ignore)


_RETRY = object()


class Worker:
    def __init__(
        self,
        conn: redis.Redis,
        config: WorkerConfig,
        prepare: Callable[[TaskRecord, Path, Reporter], LaunchSpec] | None = None,
    ):
        self.conn = conn
        self.cfg = config
        self.host = socket.gethostname()
        self.name = config.name or default_name()
        self.dispatcher = Dispatcher(conn, self.name, self.host)
        self.settings = RunSettings(
            dispatcher=self.dispatcher,
            conn=conn,
            runs_dir=config.home / "runs",
            artifacts=ArtifactStore(config.artifacts_url or str(config.home / "artifacts")),
            grace_s=config.grace_s,
            keep_runs=config.keep_runs,
            redactor=Redactor(known_values(urls=[config.redis_url])),
        )
        self.prepare = prepare or Preparer(
            ModeSettings(
                home=config.home,
                worker=self.name,
                default_mode=config.mode,
                docker_image=config.docker_image,
                docker_network=config.docker_network,
                redis_url=config.redis_url,
                env_cache_size=config.env_cache_size,
                installer=config.installer,
            ),
            self.dispatcher.store,
        )
        self.info = workers.WorkerInfo(
            name=self.name,
            host=self.host,
            pid=os.getpid(),
            queues=list(config.queues),
            gpus=list(config.gpus),
            mode=config.mode,
            order="round-robin" if config.order_fairness else "strict",
        )
        self.holds = GpuHolds(conn, self.host, self.name)
        self.scheduler = Scheduler(
            conn,
            self.holds,
            default_nvml,
            SchedulerConfig(
                gpus=list(config.gpus),
                queue_gpus=dict(config.queue_gpus),
                share=max(1, config.gpu_share),
                backfill_s=config.backfill_s,
                foreign_mem_mb=config.foreign_mem_mb,
            ),
        )
        self.task_gpus: dict[str, list[int]] = {}
        self.task_memory_mb: dict[str, int] = {}  # declared GPU memory: heartbeats refresh holds with it
        self.running: dict[str, TaskRun] = {}
        self._running_lock = threading.Lock()
        self.draining = False
        self.stopping = False
        self._done = threading.Event()
        self._beat = threading.Event()
        self._next_queue = 0
        self.completed = 0
        self._contact = time.monotonic()  # when the last heartbeat that reached Redis started
        self.fenced = 0
        self._by_backstop = False  # the last wait ran out with nothing woken (see _try_claim)

    # -- set-up ----------------------------------------------------------------------------
    def check_queues(self) -> None:
        broker = QueueRegistry(self.conn)
        for queue in self.cfg.queues:
            if self.cfg.create_queues:
                broker.create(queue, exist_ok=True)
            else:
                broker.require(queue)
        if not self.cfg.queues:
            raise InvalidInput("a worker needs at least one --queue")

    # -- the main loop -----------------------------------------------------------------------
    def run(self) -> int:
        """Work until drained, stopped, or (with burst) the queues are empty. Returns an exit code."""
        self.check_queues()
        self.settings.runs_dir.mkdir(parents=True, exist_ok=True)
        wake.clear_inbox(self.conn, self.name)  # what an earlier worker of this name was sent
        workers.register(self.conn, self.info, psutil.pid_exists)
        self._end_leftovers()
        self.settings.guard = self._start_guard()
        log.info(
            "worker %s listening on %s (%s order), GPUs: %s",
            self.name,
            ", ".join(self.cfg.queues),
            self.info.order,
            ",".join(map(str, self.cfg.gpus)) or "none",
        )
        threads = [
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self._fence_loop, name="fence", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            self._loop()
        finally:
            self._done.set()
            self._beat.set()
            threads[0].join(timeout=10)  # the heartbeat thread
            with contextlib.suppress(redis.RedisError):
                workers.unregister(self.conn, self.name)
            if self.settings.guard is not None:
                self.settings.guard.close()
        return 0

    def _start_guard(self) -> guard.Guard | None:
        """The guard process that ends this worker's tasks if the worker dies (``guard.py``)."""
        return guard.Guard()

    def _end_leftovers(self) -> None:
        """Before taking work, end what dead workers of this home left on this host."""
        leftovers.end_dead_workers_leftovers(self.conn, self.name, self.host, self.settings.runs_dir)

    def _loop(self) -> None:
        parked: set[str] = set()  # queues whose head this worker cannot take now: not waited on
        woke: str | None = None  # the queue whose bell woke this worker
        while True:
            if self.draining or self.stopping:
                if not self.running:
                    return
                self._await([], parked, BACKSTOP_S)
                woke = None
                continue
            taken: set[str] = set()
            limit = self._slot_limit()
            misses = 0
            failed = False
            while len(self.running) < limit and not (self.draining or self.stopping) and misses < 20:
                try:
                    claimed = self._try_claim()
                except Exception:  # a bug or bad data must not take the worker down
                    log.exception("could not take work; trying again shortly")
                    failed = True
                    break
                if claimed is None:
                    break
                if claimed is _RETRY:
                    misses += 1  # another worker took it first: look again
                    continue
                taken.add(claimed.record.execution.queue or "")
            if self.cfg.burst and not taken and not self.running and not self._waiting():
                return
            full = len(self.running) >= limit
            if woke is not None and woke not in taken:
                self._pass_on(woke, parked, full)
            if failed or full:
                woke = self._await([], parked, RETRY_S if failed else BACKSTOP_S)
            else:
                woke = self._await([q for q in self.cfg.queues if q not in parked], parked, BACKSTOP_S)

    def _pass_on(self, queue: str, parked: set[str], full: bool) -> None:
        """Woken for ``queue`` and took nothing from it: hand its token to another worker (unless
        the queue is at its limit: a task's end there rings again), and, when the head does not fit
        this worker, stop listening to the queue until a GPU of this host comes free."""
        reason = None if full else self.scheduler.blocked.get(queue)
        if reason == "limit":
            return
        try:
            wake.ring(self.conn, queue)  # no more tokens than tasks: nothing when it is empty
            if reason in ("gpus", "held", "too_big"):
                parked.add(queue)
                if reason != "too_big":
                    wake.wait_for_gpu(self.conn, self.host, self.name)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis unreachable while passing a wake-up on (%s)", exc)

    def _await(self, queues: list[str], parked: set[str], timeout_s: float) -> str | None:
        """Block in Redis until a message for this worker or a token on one of ``queues``; the
        queue whose token woke it, else None (a message was handled, or the backstop passed: the
        parked queues are listened to again)."""
        self._by_backstop = False
        try:
            got = wake.wait(self.conn, self.name, queues, timeout_s)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis unreachable while waiting for work (%s); retrying", exc)
            self._done.wait(1.0)
            return None
        self._by_backstop = got is None and bool(queues)
        if got is not None and got[0] == "bell":
            return got[1]
        parked.clear()
        if got is not None:
            self._message(got[1])
        return None

    def _message(self, message: str) -> None:
        """A message from this worker's inbox: ``abort <task id> <attempt>``, ``drain``, ``stop``, or
        a wake-up (``ended``, ``gpu``, ``poke``: a slot or a GPU may be free, or the state changed).
        An abort names the attempt it was asked for: a stale one never ends a later attempt."""
        command, _, arg = message.partition(" ")
        if command == "abort":
            task_id, _, attempt = arg.partition(" ")
            run = self.running.get(task_id)
            if run is not None and (not attempt.isdigit() or int(attempt) == run.attempt):
                run.request_abort()
        elif command in ("drain", "stop"):
            if self.info.command != "stop":
                self.info.command = command  # the entry shows it from the next heartbeat on
            self._command(command)

    def _poke(self) -> None:
        """Wake the main loop (it may be blocked in Redis) from another thread or a signal handler."""

        def send() -> None:
            with contextlib.suppress(redis.RedisError):
                wake.notify(self.conn, self.name, "poke")

        threading.Thread(target=send, name="poke", daemon=True).start()

    def _slot_limit(self) -> int:
        """How many tasks may run at once: the slots, or as many as the GPUs can hold."""
        if not self.cfg.gpus:
            return self.cfg.slots
        return max(self.cfg.slots, len(self.cfg.gpus) * max(1, self.cfg.gpu_share))

    def _waiting(self) -> bool:
        """Burst mode: is anything still waiting that this worker could run (after GPUs free up)?"""
        if not self.running:
            return False
        return queue_lists.any_waiting(self.conn, self.cfg.queues)

    def _ordered_queues(self) -> list[str]:
        queues = self.cfg.queues
        if not self.cfg.order_fairness:
            return list(queues)
        start = self._next_queue % len(queues)
        return queues[start:] + queues[:start]

    def _try_claim(self):
        """Take the task the scheduler chooses, with its GPUs held; None when nothing fits now,
        ``_RETRY`` when another worker was faster."""
        try:
            # after a backstop, not a wake-up: a task queued moments ago has its token with another
            # worker (racing it for the claim would cost a lost race per backstop that ran out then)
            fresh = BACKSTOP_MIN_AGE_S if self._by_backstop and not self.cfg.burst else 0.0
            choice = self.scheduler.choose(self._ordered_queues(), min_age_s=fresh)
            if choice is None:
                return None
            gpus = choice.gpus
            if gpus and not self.holds.acquire(
                choice.task_id, gpus, choice.memory_mb, self.cfg.gpu_share, self.scheduler.totals(gpus)
            ):
                return _RETRY  # another worker on this host took one of those GPUs
            reached = time.monotonic()  # the claim below stamps its own time on the task's claim
            claimed = self.dispatcher.claim_head(choice.queue, choice.task_id, choice.limit)
            if claimed == DRAINING:  # marked draining in Redis (autoscaler, `worker drain`): take nothing more
                self.holds.release(choice.task_id, gpus)
                if not self.draining:
                    log.info("marked draining: finishing current work, then exiting")
                    self.drain()
                return None
            record = self.dispatcher.start(claimed, [str(g) for g in gpus]) if claimed else None
            if record is None:
                self.holds.release(choice.task_id, gpus)
                return _RETRY
            if self.cfg.order_fairness:
                self._next_queue = self.cfg.queues.index(choice.queue) + 1
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis unreachable while taking work (%s); retrying", exc)
            time.sleep(1.0)
            return None
        run = TaskRun(self.settings, record, gpus, self.prepare)
        run.contact = reached
        if reached - self._contact > workers.heartbeat_s():
            self._beat.set()  # the link is back before the heartbeats noticed: refresh every claim now
        with self._running_lock:
            self.running[record.id] = run
            self.task_gpus[record.id] = gpus
            self.task_memory_mb[record.id] = choice.memory_mb
        self.info.state, self.info.current = "busy", list(self.running)
        thread = threading.Thread(target=self._run_task, args=(run,), name=f"task-{record.id}", daemon=True)
        thread.start()
        return run

    def _run_task(self, run: TaskRun) -> None:
        try:
            run.run()
        finally:
            with self._running_lock:
                # a newer attempt of the same task may run here already: leave its entries alone
                mine = self.running.get(run.task_id) is run
                if mine:
                    self.running.pop(run.task_id, None)
                    self.task_memory_mb.pop(run.task_id, None)
                gpus = self.task_gpus.pop(run.task_id, []) if mine else []
            with contextlib.suppress(redis.RedisError):  # else the holds expire by themselves
                self.holds.release(run.task_id, gpus)
            with self._running_lock:
                self.info.current = list(self.running)
                if not self.running and self.info.state == "busy":
                    self.info.state = "idle"
            self.completed += 1
            with contextlib.suppress(redis.RedisError):
                wake.notify(self.conn, self.name, "ended")  # the main loop takes the next task
            run.cleanup()  # after the wake: the next task starts meanwhile

    # -- signals and commands ------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def on_signal(signum, _frame) -> None:
            if not self.draining:
                log.info("%s: draining (finishing current work; send again to stop now)", signal.Signals(signum).name)
                self.drain()
            else:
                log.info("%s again: stopping, current tasks go back to their queues", signal.Signals(signum).name)
                self.stop()

        def on_quit(signum, _frame) -> None:
            log.info("SIGQUIT: stopping, current tasks go back to their queues")
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGQUIT, on_quit)

    def drain(self) -> None:
        self.draining = True
        self.info.state = "draining"
        self._poke()
        self._beat.set()  # report the new state now, from the heartbeat thread

    def stop(self) -> None:
        self.draining = self.stopping = True
        self.info.state = "stopping"
        with self._running_lock:
            runs = list(self.running.values())
        for run in runs:
            run.request_requeue(f"worker {self.name} stopped; back at the front of its queue")
        self._poke()
        self._beat.set()

    # -- background threads --------------------------------------------------------------------
    def _command(self, command: str | None) -> None:
        if command == "drain" and not self.draining:
            log.info("drain requested: finishing current work, then exiting")
            self.drain()
        elif command == "stop" and not self.stopping:
            log.info("stop requested: current tasks go back to their queues")
            self.stop()

    def _heartbeat_loop(self) -> None:
        last_reap = 0.0
        beats = 0
        reported_state = self.info.state
        monitor = Monitor(default_nvml)  # built here: psutil's CPU counter is per thread
        while not self._done.is_set():
            self._beat.wait(workers.heartbeat_s())
            self._beat.clear()
            if self._done.is_set():
                return
            self._sample_stats(monitor)
            started = time.monotonic()
            try:
                if self.info.state != reported_state and self.info.state in ("draining", "stopping"):
                    workers.publish_state(self.conn, self.info)
                reported_state = self.info.state
                with self._running_lock:
                    claimed = {tid: run.launched.pgid if run.launched else None for tid, run in self.running.items()}
                beats += 1
                self._command(workers.heartbeat(self.conn, self.info, claimed, announce=beats % ANNOUNCE_EVERY == 1))
                self._contact = started
                with self._running_lock:
                    holds = {tid: (g, self.task_memory_mb.get(tid, 0)) for tid, g in self.task_gpus.items() if g}
                self.holds.refresh(holds)
                self._check_abort_flags(list(claimed))
                if time.monotonic() - last_reap >= REAP_EVERY_S:
                    last_reap = time.monotonic()
                    self._reap()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("heartbeat failed: %s", exc)
            except Exception:  # never let the heartbeat thread die
                log.exception("heartbeat error")

    def _fence_loop(self) -> None:
        """Watchdog, apart from the heartbeat (whose Redis call may hang): see ``fence_silent_runs``."""
        while not self._done.wait(min(0.25, fence_after_s() / 4)):
            self.fence_silent_runs()

    def fence_silent_runs(self) -> int:
        """End every running task whose claim nothing refreshed for fence_after_s(), before any reaper
        may hand it to another worker; returns how many were told to end.

        A claim is refreshed by the heartbeats (all of this worker's claims at once) and written fresh
        by the claim that started the attempt: a task taken right after the link came back, before the
        next heartbeat, is in contact. Log and metric reports are not: they refresh no claim, and a
        reaper reads only the claims."""
        now = time.monotonic()
        with self._running_lock:
            runs = [run for run in self.running.values() if run.fence_reason is None and not run.exited]
        fenced = 0
        for run in runs:
            silent = now - max(self._contact, run.contact)
            if silent < fence_after_s():
                continue
            log.warning("task %s: Redis out of reach for %.1fs; ending it so it cannot run twice", run.task_id, silent)
            self.fenced += 1
            fenced += 1
            run.request_fence(
                f"worker {self.name} lost Redis for {silent:.0f}s; the task was ended so that it cannot run twice",
                fence_grace_s(),
            )
        return fenced

    def _sample_stats(self, monitor: Monitor) -> None:
        """Put a fresh snapshot in the registry entry and feed the running tasks' GPU summaries; never raises."""
        try:
            self.info.stats = monitor.sample(self.cfg.gpus)
            with self._running_lock:
                runs = list(self.running.values())
            for run in runs:
                run.gpu_usage.add(self.info.stats.get("gpus"))
        except Exception as exc:  # a sampling failure costs the stats, never the heartbeat
            self.info.stats = {"time": time.time(), "error": f"{type(exc).__name__}: {exc}"}
            log.debug("sampling stats failed", exc_info=True)

    def _check_abort_flags(self, task_ids: list[str]) -> None:
        """Backstop for a missed abort event: the flag on the record."""
        if not task_ids:
            return
        for record in TaskStore(self.conn).get_many(task_ids):
            if record is not None and record.runtime.abort_requested:
                run = self.running.get(record.id)
                if run is not None:
                    run.request_abort(record.status_message or "aborted by user")

    def _reap(self) -> None:
        done = reaper.reap(self.conn, turn=(self.name, REAP_EVERY_S))
        for item in done:
            log.warning("reaped task %s of lost worker %s: %s", item.task_id, item.worker, item.outcome)
        local = [d for d in done if d.host == self.host]
        if local:  # apart from the heartbeat: a slow Docker engine must never delay heartbeats
            # not a daemon: a worker that exits meanwhile still finishes the clean-up
            threading.Thread(
                target=leftovers.clean_up_after, args=(local, self.name), name="reaper-cleanup", daemon=False
            ).start()
