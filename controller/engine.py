"""The pipeline controller loop: launch ready steps, react to their status events, finish.

It is event-driven: it blocks on the event stream and wakes the moment a step's task changes
status (no polling interval; ClearML polls every 12 s). Every few seconds without events it
re-reads all step records anyway (a lost event never loses a pipeline). Its whole state lives in
Redis, so a controller that is killed and started again resumes where it was: finished steps
are never re-run.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue

import redis
from redis import Redis

from ..queues import lifecycle, workers
from ..queues.backend import documents, streams
from ..queues.errors import IllegalTransition, InvalidInput, TaskNotFound, TrainyardError
from ..queues.newrecords import clone_record
from ..queues.params import check_parameters
from ..queues.queue_registry import QueueRegistry
from ..queues.record import TaskRecord, TaskStatus
from ..queues.store import TaskStore, new_task_id
from ..queues.task import Task
from . import cache, dag, run_store
from .functions import function_record
from .model import DONE_OK, FINISHED, PipelineRun, StepSpec, StepState
from .refs import Resolver

log = logging.getLogger("trainyard.pipeline")
RECONCILE_S = 3.0
QUEUE_CHECK_S = 2.0
ABORT_WAIT_S = 8.0  # how long a stopped pipeline waits for its aborted steps to end (< the grace period)

_TASK_TO_STEP = {
    TaskStatus.DRAFT: "pending",
    TaskStatus.QUEUED: "queued",
    TaskStatus.RUNNING: "running",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.ABORTED: "aborted",
}


def import_callable(path: str) -> Callable:
    """``"package.module:function"`` -> the function (callbacks travel as such paths)."""
    module, _, name = path.partition(":")
    target = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def check_queues(conn: Redis, run: PipelineRun) -> None:
    """Every queue a step will use must exist: refused before anything is enqueued."""
    broker = QueueRegistry(conn)
    for name, step in run.steps.items():
        queue = run.local_queue or step.queue or run.default_queue
        if not queue:
            raise InvalidInput(f"step {name!r} has no queue: give it one, or set the pipeline's default queue")
        broker.require(queue)


class Controller:
    """Runs one pipeline run to its end (or until stopped)."""

    def __init__(
        self, conn: Redis, run_id: str, callbacks: dict[str, Callable] | None = None, open_ended: bool = False
    ):
        self.conn = conn
        self.store = TaskStore(conn)
        self.run_id = run_id
        self.run = run_store.load(conn, run_id)
        self.callbacks = callbacks or {}
        self.stop_event = threading.Event()
        self._last_queue_check = 0.0
        # An open-ended run takes steps while it runs (add_step, from another thread) until close().
        self._open = open_ended
        self._incoming: SimpleQueue[StepSpec] = SimpleQueue()
        self._known = dict(self.run.steps)
        self._known_lock = threading.Lock()
        self._progress = threading.Condition()
        self._over = False

    # -- an open-ended run -------------------------------------------------------------------
    def add_step(self, spec: StepSpec) -> None:
        """Add a step to a running open-ended run (thread-safe); its graph and references are checked
        against the steps known so far."""
        if not self._open:
            raise InvalidInput(f"pipeline run {self.run_id} takes no new steps (it is not open-ended, or closed)")
        with self._known_lock:
            if spec.name in self._known or spec.name == "pipeline":
                raise InvalidInput(f"step {spec.name!r} is already in the pipeline")
            dag.check({**self._known, spec.name: spec}, self.run.parameters)
            self._known[spec.name] = spec
        self._incoming.put(spec)
        streams.announce(self.conn, "pipeline_step", self.run_id, "running")  # wake the loop now

    def close(self) -> None:
        """No more steps: the run ends once the steps it has are over."""
        self._open = False
        streams.announce(self.conn, "pipeline_step", self.run_id, "running")

    def wait_step(self, name: str, timeout: float | None = None) -> StepState:
        """Block until step ``name`` is over (or the run is); returns its state."""

        def over() -> bool:
            state = self.run.state.get(name)
            return self._over or (state is not None and state.status in FINISHED)

        with self._progress:
            if not self._progress.wait_for(over, timeout):
                raise InvalidInput(f"step {name!r} is not over after {timeout}s")
        state = self.run.state.get(name)
        if state is None:
            raise InvalidInput(f"the pipeline ended before step {name!r} ran")
        return state

    def _take_incoming(self) -> bool:
        added = False
        while not self._incoming.empty():
            spec = self._incoming.get()
            self.run.steps[spec.name] = spec
            self.run.state[spec.name] = _new_state()
            added = True
        return added

    def _notify(self, over: bool = False) -> None:
        with self._progress:
            self._over = self._over or over
            self._progress.notify_all()

    # -- the loop ----------------------------------------------------------------------------
    def execute(self) -> PipelineRun:
        run = self.run
        dag.check(run.steps, run.parameters)
        check_queues(self.conn, run)
        run.status, run.started, run.ended, run.message = "running", run.started or time.time(), None, None
        for name in run.steps:
            run.state.setdefault(name, run.state.get(name) or _new_state())
        cursor = streams.last_event_id(self.conn)
        self._sync_all()
        self._save()
        box = [cursor]  # the event stream position, moved on by each pass
        while True:
            try:
                over = self._step(box)
                self._notify()
                if over:
                    break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Redis restarting or out of reach: the run document has what is needed; go on when it is back
                log.warning("pipeline %s: Redis unreachable (%s); retrying", run.id, exc)
                time.sleep(1.0)
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    self._sync_all()
        try:
            for _ in range(120):
                try:
                    return self._finish()
                except (redis.ConnectionError, redis.TimeoutError):
                    time.sleep(1.0)
            return self._finish()
        finally:
            self._notify(over=True)

    def _step(self, cursor_box: list) -> bool:
        """One pass of the loop: launch what is ready, wait for events, sync; True when the run is over."""
        run = self.run
        if self.stop_event.is_set() or self._stop_flag():
            self._abort("aborted: the pipeline was stopped")
            return True
        changed = self._take_incoming()
        changed = self._launch_ready() or changed
        if self._all_finished() and not self._open and self._incoming.empty():
            return True
        self._check_queues()
        if changed:
            self._save()
        got = streams.follow_events(self.conn, cursor_box[0], RECONCILE_S)
        mine = {state.task_id: name for name, state in run.state.items() if state.task_id}
        touched = set()
        for event in got:
            cursor_box[0] = event.id
            if event.task_id in mine:
                touched.add(mine[event.task_id])
        for name in touched:
            self._sync(name)
        if not got:
            self._sync_all()
        if touched:
            self._save()
        return False

    # -- launching ---------------------------------------------------------------------------
    def _launch_ready(self) -> bool:
        run = self.run
        changed = False
        failed = any(s.status in ("failed", "aborted") for s in run.state.values())
        for name, step in run.steps.items():
            state = run.state[name]
            if state.status != "pending":
                continue
            parents = dag.all_parents(step)
            parent_states = [run.state[p].status for p in parents]
            if any(s in ("failed", "aborted", "skipped") for s in parent_states) or (failed and run.abort_on_failure):
                state.status, state.message = "skipped", "a step it depends on did not complete"
                changed = True
                continue
            if all(s in DONE_OK for s in parent_states):
                self._launch(name, step)
                changed = True
        return changed

    def _launch(self, name: str, step: StepSpec) -> None:
        run, state = self.run, self.run.state[name]
        try:
            if step.pre_callback and self._callback(step.pre_callback)(self, name, step) is False:
                state.status, state.message = "skipped", "skipped by its pre-execute callback"
                return
            resolver = _TrackingResolver(run.parameters, self._step_record)
            record = self._build(name, step, resolver)
            if step.cache and not (step.force_rerun or run.force_rerun):
                key = cache.cache_key(record, resolver.artifact_hashes)
                state.cache_key = key
                hit = cache.lookup(self.conn, key)
                if hit is not None:
                    state.status, state.task_id, state.message = "cached", hit.id, f"reused task {hit.id}"
                    state.started = state.ended = time.time()
                    self._post(name, step)
                    return
            elif step.cache:
                state.cache_key = cache.cache_key(record, resolver.artifact_hashes)
            queue = run.local_queue or step.queue or run.default_queue
            Task.store_new(record, queue, self.conn)  # born queued: one write, one event
            state.status, state.task_id, state.started, state.ended = "queued", record.id, time.time(), None
            state.attempt += 1
            state.error = state.message = None
        except TrainyardError as exc:
            state.status, state.error, state.ended = "failed", str(exc), time.time()

    def _build(self, name: str, step: StepSpec, resolver: Resolver) -> TaskRecord:
        """The step's task record, references resolved (not stored yet)."""
        run = self.run
        overrides = resolver.resolve(step.parameter_override)
        configuration = resolver.resolve(step.configuration_overrides)
        if step.function is not None:
            record = function_record(
                step.function, name, run.project, resolver.resolve(step.kwargs), requirements=step.requirements
            )
            record.parameters = {**record.parameters, **overrides}
        elif step.template is not None:
            record = TaskRecord.model_validate(
                {**step.template, "id": new_task_id(), "name": name, "project": run.project, "parameters": {}}
            )
            record.parameters = check_parameters({**step.template.get("parameters", {}), **overrides})
        else:
            base = self._base_task(name, step)
            record = clone_record(base, name, run.project, overrides, None, None)
        step.execution_options().apply(record)  # every kind of step (a pipeline file's job is a template)
        record.parent = run.id
        record.tags = list(dict.fromkeys([*record.tags, f"pipeline:{run.id}", f"step:{name}"]))
        record.configuration = {**record.configuration, **configuration}
        if step.retries:
            record.execution.retries = 0  # the controller retries a step itself (a fresh attempt each time)
        return record

    def _base_task(self, name: str, step: StepSpec) -> TaskRecord:
        ref = step.base_task or ""
        try:
            if "/" in ref:
                project, _, task_name = ref.rpartition("/")
                return self.store.find_by_name(project, task_name)
            return self.store.get(ref)
        except TaskNotFound as exc:
            raise InvalidInput(f"step {name!r}: base task {ref!r} not found ({exc})") from None

    def _step_record(self, name: str) -> TaskRecord:
        state = self.run.state.get(name)
        if state is None or not state.task_id:
            raise InvalidInput(f"step {name!r} has not run")
        return self.store.get(state.task_id)

    # -- following ---------------------------------------------------------------------------
    def _sync_all(self) -> None:
        for name, state in self.run.state.items():
            if state.task_id and state.status in ("queued", "running"):
                self._sync(name)

    def _sync(self, name: str) -> None:
        run, state = self.run, self.run.state[name]
        if state.status not in ("queued", "running"):
            return
        try:
            record = self.store.get(state.task_id)
        except TaskNotFound:
            state.status, state.error, state.ended = "failed", f"task {state.task_id} was deleted", time.time()
            return
        status = _TASK_TO_STEP[record.status]
        if status in ("queued", "running", "pending"):
            state.status = "running" if status == "running" else "queued"
            return
        state.ended = record.ended or time.time()
        if status == "completed":
            state.status = "completed"
            if state.cache_key:
                cache.remember(self.conn, state.cache_key, record.id)
            self._post(name, run.steps[name])
            return
        step = run.steps[name]
        error = record.runtime.error or record.status_message or status
        if status == "failed" and lifecycle.may_retry(state.attempt, step.retries):
            state.message = f"attempt {state.attempt} failed ({error}); retrying"
            try:
                Task(record, self.conn).reset().enqueue(run.local_queue or step.queue or run.default_queue)
                state.status, state.attempt = "queued", state.attempt + 1
                return
            except TrainyardError as exc:
                error = f"{error}; retry failed: {exc}"
        state.status, state.error = status, error
        if run.abort_on_failure:
            self._abort_running(f"pipeline step {name!r} {status}")

    def _post(self, name: str, step: StepSpec) -> None:
        if step.post_callback:
            try:
                self._callback(step.post_callback)(self, name, step)
            except Exception as exc:  # a callback bug is reported, not fatal
                self.run.state[name].message = f"post-execute callback failed: {exc}"

    def _callback(self, path: str) -> Callable:
        return self.callbacks.get(path) or import_callable(path)

    # -- stopping and finishing --------------------------------------------------------------------
    def _stop_flag(self) -> bool:
        return documents.stop_requested(self.conn, self.run_id)

    def _abort_running(self, reason: str) -> None:
        for state in self.run.state.values():
            if state.status in ("queued", "running") and state.task_id:
                with contextlib.suppress(IllegalTransition, TaskNotFound):
                    Task.get(state.task_id, self.conn).abort(reason)
                if state.status == "queued":
                    state.status, state.ended = "aborted", time.time()

    def _abort(self, reason: str) -> None:
        self._abort_running(reason)
        self._wait_aborted(ABORT_WAIT_S)
        for state in self.run.state.values():
            if state.status == "pending":
                state.status, state.message = "skipped", reason
            elif state.status == "running":
                state.status, state.ended = "aborted", time.time()
        self.run.status, self.run.message = "aborted", reason

    def end(self, status: str, reason: str) -> PipelineRun:
        """End the run now, from outside its loop (its controller crashed, or is gone): running steps
        are aborted without waiting, pending ones skipped, the run gets ``status`` and ``reason``."""
        self._abort_running(reason)
        for state in self.run.state.values():
            if state.status == "pending":
                state.status, state.message = "skipped", reason
            elif state.status == "running":
                state.status, state.ended = "aborted", time.time()
        self.run.status, self.run.message, self.run.ended = status, reason, time.time()
        self._save()
        return self.run

    def _wait_aborted(self, timeout: float) -> None:
        """Give aborted step tasks a moment to end (their workers kill them), event-driven."""
        deadline = time.monotonic() + timeout
        for state in self.run.state.values():
            if state.task_id and state.status in ("queued", "running"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                with contextlib.suppress(TrainyardError):
                    Task.get(state.task_id, self.conn).wait(timeout=remaining)

    def _all_finished(self) -> bool:
        return all(s.status in FINISHED for s in self.run.state.values())

    def _finish(self) -> PipelineRun:
        run = self.run
        run.ended = time.time()
        if run.status != "aborted":
            bad = [(n, s) for n, s in run.state.items() if s.status in ("failed", "aborted")]
            if bad:
                name, state = bad[0]
                run.status = "failed"
                run.message = f"step {name!r} {state.status}: {state.error or 'no reason given'}"
            else:
                run.status, run.message = "completed", None
        self._save()
        return run

    def _save(self) -> None:
        run_store.save(self.conn, self.run)

    # -- deadlock detection ----------------------------------------------------------------------
    def _check_queues(self) -> None:
        """A queued step whose queue no live worker serves is reported (it would wait forever)."""
        now = time.monotonic()
        if now - self._last_queue_check < QUEUE_CHECK_S:
            return
        self._last_queue_check = now
        waiting = {n: s for n, s in self.run.state.items() if s.status == "queued"}
        if not waiting:
            return
        live = workers.list_workers(self.conn)
        me = self._controller_worker()
        problems = []
        for name, state in waiting.items():
            step = self.run.steps[name]
            queue = self.run.local_queue or step.queue or self.run.default_queue
            serving = [w for w in live if queue in w.queues]
            if not serving:
                state.message = f"waiting: no live worker serves queue {queue!r}"
            elif all(w.name == me for w in serving) and len(live) and all(w.state == "busy" for w in serving):
                state.message = f"waiting: only this pipeline's own worker serves queue {queue!r} (and it is busy)"
            else:
                state.message = None
                continue
            problems.append(f"{name}: {state.message}")
        self.run.message = "; ".join(problems) or None
        self._save()

    def _controller_worker(self) -> str | None:
        try:
            return self.store.get(self.run_id).runtime.worker
        except TaskNotFound:
            return None


class _TrackingResolver(Resolver):
    """A resolver that remembers the content hashes of the artifacts it resolved (for caching)."""

    def __init__(self, parameters, record):
        super().__init__(parameters, record)
        self.artifact_hashes: list[str] = []

    def _artifact(self, ref, record):  # type: ignore[override]
        value = Resolver._artifact(ref, record)
        artifact = record.artifacts.get(ref.path[1])
        if artifact is not None:
            self.artifact_hashes.append(artifact.sha256 or artifact.uri)
        return value


def _new_state():
    from .model import StepState

    return StepState()
