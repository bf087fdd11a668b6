"""The study controller: Optuna ask-and-tell driven by the trials' metric and status streams.

It blocks on one XREAD over the event stream and the metric stream of every active trial. Each
objective point is reported to its Optuna trial the moment it arrives (every step, in order), the
pruner is asked at once, and a pruned trial is aborted at once (its worker ends it: TERM, grace,
KILL). A trial that ends is told to the study and its slot refilled in the same pass. Without
events it wakes every ``reconcile_s`` and re-reads its trials (a lost event loses nothing).

Everything lives in Redis (``queues/studies.py``): the study document, the book of trials and the
Optuna journal. A controller killed at any point and started again re-attaches the running trials,
launches a booked trial whose task was never written, reuses a trial Optuna handed out but that was
never booked, and never launches a trial twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
import redis
from optuna.trial import TrialState
from redis import Redis

from ...queues import keys, studies
from ...queues.backend import streams
from ...queues.errors import IllegalTransition, TaskNotFound, TrainyardError
from ...queues.record import TaskRecord, TaskStatus
from ...queues.store import TaskStore, new_task_id
from ...queues.task import Task
from .engines import build_pruner, build_sampler, grid_points
from .model import StudyDoc, TrialEntry
from .parameters import Parameter, decode_all, space_distributions
from .storage import open_study
from .trials import objective_value, reported_series, trial_record

log = logging.getLogger("trainyard.hpo")
optuna.logging.set_verbosity(optuna.logging.WARNING)

FINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.ABORTED)
JobCallback = Callable[[str, Any, Any, dict, str | None], Any]


class Detached(Exception):
    """The controller leaves without touching the study (its task goes on in a later attempt)."""


class StudyController:
    """Runs one study to its end (or until stopped); safe to start again on the same study."""

    def __init__(
        self,
        conn: Redis,
        study_id: str,
        callback: JobCallback | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
    ):
        self.conn = conn
        self.store = TaskStore(conn)
        self.doc = StudyDoc.model_validate(studies.load(conn, study_id))
        self.space = [Parameter.from_dict(d) for d in self.doc.space]
        self.distributions = space_distributions(self.space)
        self.callback = callback
        self.study = open_study(
            conn,
            study_id,
            [o.direction for o in self.doc.objectives],
            sampler or build_sampler(self.doc.sampler, self.doc.strategy, self.space),
            pruner or build_pruner(self.doc.pruner, self.doc.strategy),
        )
        if self.study.get_trials(deepcopy=False):  # resumed: a seeded sampler would draw its first points again
            self.study.sampler.reseed_rng()
        self.entries = {n: TrialEntry.model_validate(e) for n, e in studies.trials(conn, study_id).items()}
        self.cursors: dict[int, str] = {}  # trial number -> its metric stream position
        self.optuna_trials: dict[int, optuna.trial.Trial] = {}
        self.reported: dict[int, set[int]] = {}  # trial number -> steps Optuna has (a restart re-reads streams)
        self.stop_event = threading.Event()  # stop the study: abort its trials
        self.term_event = threading.Event()  # SIGTERM: a user's abort of the optimiser task, or its worker leaving
        self.stopping: str | None = None  # why no new trial starts (time limit, stop, objective error)
        self.final_status = "completed"
        self.cursor = "0-0"  # the event stream position
        self._completed: list[TrialEntry] = []  # told, not yet in the best / callbacks
        self.total = self.doc.total_max_jobs
        points = grid_points(self.study.sampler)
        if points is not None:  # a grid (GridSearch, or a GridSampler by name or object) ends with its points
            self.total = min(self.total, points)
        self._base: TaskRecord | None = None
        self._objective_seen = any(e.value is not None for e in self.entries.values())

    # -- the loop ----------------------------------------------------------------------------------
    def execute(self) -> StudyDoc:
        doc = self.doc
        doc.status, doc.message, doc.ended = "running", None, None
        doc.started = doc.started or time.time()
        self._save()
        self.cursor = streams.last_event_id(self.conn)
        self._recover()
        while True:
            try:
                if self._step_once():
                    break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("study %s: Redis unreachable (%s); retrying", doc.id, exc)
                time.sleep(1.0)
        return self._finish()

    def _step_once(self) -> bool:
        """Launch, wait for events, react; True when the study is over."""
        if self.term_event.is_set() and not self._terminated_by_user():
            raise Detached("the optimiser task was ended by its worker (stop, fence or requeue)")
        if not self.stopping and (self.stop_event.is_set() or studies.stop_requested(self.conn, self.doc.id)):
            self._stop_all("stopped", "the study was stopped")
        self._check_budgets()
        self._fill()
        active = self._active()
        if not active and (self.stopping or len(self.entries) >= self.total):
            return True
        wanted = {keys.EVENTS: self.cursor}
        wanted.update({keys.metrics(self.entries[n].task): self.cursors.setdefault(n, "0-0") for n in active})
        by_stream = {keys.metrics(self.entries[n].task): n for n in active}
        items = studies.read(self.conn, wanted, self._block_s())
        self.cursor = wanted[keys.EVENTS]
        touched: set[int] = set()
        by_task = {self.entries[n].task: n for n in active}
        for stream, entry_id, fields in items:
            if stream == keys.EVENTS:
                task_id = fields.get(b"task", b"").decode()
                kind = fields.get(b"kind", b"").decode()
                if task_id in by_task and kind == "status":
                    touched.add(by_task[task_id])
                elif task_id == self.doc.id and kind in ("study_stop", "abort_requested"):  # stop, or task aborted
                    self.stop_event.set()
            else:
                number = by_stream[stream]
                self.cursors[number] = entry_id
                self._on_point(number, entry_id, fields)
        for number in sorted(touched):
            self._sync(number)
        if not items:
            for number in active:
                self._sync(number)
            self._check_deadlines()
        self._fill()  # a freed slot is refilled in this pass, before the bookkeeping below
        self._flush_completions()
        return False

    def _terminated_by_user(self) -> bool:
        """SIGTERM came from an abort of the optimiser's task (stop the study), or from its worker
        stopping or losing Redis: then leave, the trials keep running and the next attempt of the
        task re-attaches them."""
        try:
            aborted = self.store.get(self.doc.id).runtime.abort_requested
        except (TrainyardError, redis.RedisError):
            return False
        if aborted:
            self.stop_event.set()
        return aborted

    def _block_s(self) -> float:
        """Until the next per-trial or study deadline, at most the reconcile period."""
        wait = self.doc.reconcile_s
        now = time.time()
        for deadline in [*self._job_deadlines().values(), self._study_deadline(), self._compute_deadline()]:
            if deadline is not None:
                wait = min(wait, max(0.01, deadline - now))
        return wait

    # -- launching ---------------------------------------------------------------------------------
    def _active(self) -> list[int]:
        return [n for n, e in self.entries.items() if e.active]

    def _fill(self) -> None:
        """Start trials until the concurrency cap, the job budget, or a stop."""
        while not self.stopping and len(self.entries) < self.total and len(self._active()) < self.doc.max_concurrent:
            trial = self.study.ask(self.distributions)
            self.optuna_trials[trial.number] = trial
            self._book_and_launch(trial.number, decode_all(self.space, trial.params))

    def _book_and_launch(self, number: int, overrides: dict[str, Any]) -> None:
        entry = TrialEntry(number=number, task=new_task_id(), params=overrides)
        self.entries[number] = entry
        studies.put_trial(self.conn, self.doc.id, number, entry.model_dump())  # booked before its task exists
        self._launch(entry)

    def _launch(self, entry: TrialEntry) -> None:
        try:
            record = trial_record(self.base(), self.doc, entry.task, entry.number, entry.params)
            Task.store_new(record, self.doc.local_queue or self.doc.queue, self.conn)
        except TrainyardError as exc:  # e.g. the queue was deleted meanwhile: the trial fails, the study goes on
            self._tell_failed(entry, f"could not launch: {exc}")
            return
        entry.state, entry.queued = "queued", time.time()
        self._put(entry)

    def base(self) -> TaskRecord:
        if self._base is None:
            self._base = self.store.get(self.doc.base_task)
        return self._base

    # -- metric points ---------------------------------------------------------------------------
    def _on_point(self, number: int, entry_id: str, fields: dict[bytes, bytes]) -> None:
        entry = self.entries[number]
        if not entry.active or self.doc.multi_objective:
            return  # Optuna has no intermediate values for several objectives
        objective = self.doc.objectives[0]
        if fields.get(b"t", b"").decode() != objective.title or fields.get(b"s", b"").decode() != objective.series:
            return
        value = float(fields[b"v"])
        step = int(fields[b"i"]) if b"i" in fields else entry.steps
        trial = self._optuna_trial(number)
        if step < 0 or step in self.reported[number]:
            return  # already reported (a re-read after a restart), or not a step Optuna takes
        trial.report(value, step)
        self.reported[number].add(step)
        entry.steps += 1
        entry.last_step = step
        if entry.state != "stopping":
            limit = self.doc.max_iteration_per_job
            if limit is not None and step >= limit:
                self._stop_trial(entry, f"reached max_iteration_per_job ({limit})", entry_id)
            elif step >= (self.doc.min_iteration_per_job or 0) and trial.should_prune():
                self._prune(entry, trial, step, entry_id)

    def _optuna_trial(self, number: int) -> optuna.trial.Trial:
        trial = self.optuna_trials.get(number)
        if trial is None:  # after a restart: the running trial, rebuilt from the journal
            frozen = self.study.get_trials(deepcopy=False)[number]
            trial = self.optuna_trials[number] = optuna.trial.Trial(self.study, frozen._trial_id)
        if number not in self.reported:
            self.reported[number] = set(self.study.get_trials(deepcopy=False)[number].intermediate_values)
        return trial

    def _prune(self, entry: TrialEntry, trial: optuna.trial.Trial, step: int, entry_id: str) -> None:
        entry.decided, entry.decided_after = time.time(), entry_id
        entry.ended = entry.decided  # its compute ends here for the study (no longer watched)
        self._abort_task(entry, f"pruned at step {step}")
        self._tell(trial.number, state=TrialState.PRUNED)
        entry.state, entry.reason, entry.iteration = "pruned", f"pruned at step {step}", step
        self._put(entry)
        log.info("study %s: trial %d pruned at step %d", self.doc.id, entry.number, step)

    def _stop_trial(self, entry: TrialEntry, reason: str, entry_id: str | None = None) -> None:
        """End a trial early and keep its objective (a limit reached, not a prune)."""
        entry.decided, entry.decided_after = time.time(), entry_id
        entry.state, entry.reason = "stopping", reason
        self._put(entry)
        self._abort_task(entry, reason)

    def _abort_task(self, entry: TrialEntry, reason: str) -> None:
        with contextlib.suppress(IllegalTransition, TaskNotFound):  # it ended meanwhile
            Task.get(entry.task, self.conn).abort(f"{reason} by study {self.doc.id}")

    # -- trial ends ------------------------------------------------------------------------------
    def _sync(self, number: int) -> None:
        """React to the trial task's status (from an event, or a reconcile read)."""
        entry = self.entries[number]
        if not entry.active:
            return
        try:
            record = self.store.get(entry.task)
        except TaskNotFound:
            if entry.state == "launching":
                self._launch(entry)
            else:
                self._tell_failed(entry, f"its task {entry.task} was deleted")
            return
        if record.status == TaskStatus.RUNNING and entry.state == "queued":
            entry.state, entry.started = "running", record.started
            self._put(entry)
        elif record.status in (TaskStatus.DRAFT, TaskStatus.QUEUED) and entry.state == "launching":
            entry.state, entry.queued = "queued", record.queued_at
            self._put(entry)
        elif record.status in FINAL:
            self._drain_points(number)
            if self.entries[number].active:
                self._ended(entry, record)

    def _drain_points(self, number: int) -> None:
        """Every objective point the trial logged reaches Optuna before it is told the outcome."""
        entry = self.entries[number]
        for entry_id, fields in studies.metric_entries(self.conn, entry.task, self.cursors.get(number, "0-0")):
            self.cursors[number] = entry_id
            self._on_point(number, entry_id, fields)

    def _ended(self, entry: TrialEntry, record: TaskRecord) -> None:
        entry.started, entry.ended = record.started, record.ended or time.time()
        values = [objective_value(record, o) for o in self.doc.objectives]
        stopped = entry.state == "stopping" and record.status == TaskStatus.ABORTED  # by a limit: keeps its value
        ok = record.status == TaskStatus.COMPLETED or stopped
        if entry.state == "pruned":
            self._put(entry)
            return
        if ok and all(v is not None for v in values):
            self._objective_seen = True
            numbers = [v[0] for v in values]
            entry.value = numbers[0] if len(numbers) == 1 else numbers
            entry.iteration = values[0][1]
            self._tell(entry.number, numbers if len(numbers) > 1 else numbers[0])
            entry.state = "completed"
            self._put(entry)
            self._completed.append(entry)  # best, callback, top-k: after the slot is refilled
            return
        if ok:
            missing = [o.label for o, v in zip(self.doc.objectives, values) if v is None]
            seen = ", ".join(reported_series(record)) or "nothing"
            reason = f"it never reported the objective {', '.join(missing)} (it reported: {seen})"
            self._tell_failed(entry, reason)
            if record.status == TaskStatus.COMPLETED and not self._objective_seen and not self.stopping:
                # the first trial that ran to its end without the objective shows it is unknown
                self._stop_all(
                    "failed",
                    f"objective metric {', '.join(missing)} is unknown: trial {entry.number} (task {entry.task}) "
                    f"completed without it and reported {', '.join(reported_series(record)) or 'no metric'}",
                )
            return
        why = record.status_message or record.runtime.error or record.status.value
        self._tell_failed(entry, f"task {record.status.value}: {why}")

    def _tell(self, number: int, values: Any = None, state: TrialState | None = None) -> None:
        """Tell Optuna a trial's outcome. A sampler that calls ``study.stop()`` when it has nothing
        left (grid, brute force) raises outside ``optimize``; the outcome is stored all the same."""
        try:
            self.study.tell(number, values, state=state, skip_if_finished=True)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise
            self.stopping = self.stopping or "the sampler has no more points to try"

    def _tell_failed(self, entry: TrialEntry, reason: str) -> None:
        self._tell(entry.number, state=TrialState.FAIL)
        entry.state, entry.reason, entry.ended = "failed", reason, entry.ended or time.time()
        self._put(entry)
        log.info("study %s: trial %d failed: %s", self.doc.id, entry.number, reason)

    def _flush_completions(self) -> None:
        """The best so far, the top-k tags and the callbacks of the trials that completed."""
        if not self._completed:
            return
        done, self._completed = self._completed, []
        self.doc.best = best = self._best()
        self._save()
        if self.doc.save_top_k_tasks_only:
            self._archive_outside_top_k()
        for entry in done:
            self._callback(entry, best)

    def _callback(self, entry: TrialEntry, best: dict[str, Any] | None) -> None:
        if self.callback is not None and not entry.callback_done:
            try:
                self.callback(entry.task, entry.value, entry.iteration, dict(entry.params), best and best["task"])
            except Exception:  # a callback's bug never stops the study
                log.exception("study %s: job_complete_callback failed for trial %d", self.doc.id, entry.number)
            entry.callback_done = True
            self._put(entry)

    def _best(self) -> dict[str, Any] | None:
        done = [e for e in self.entries.values() if e.state == "completed" and e.value is not None]
        if not done:
            return None
        best = sorted(done, key=self.sort_key)[0]
        return {"number": best.number, "task": best.task, "value": best.value, "params": best.params}

    def sort_key(self, entry: TrialEntry) -> float:
        first = entry.value[0] if isinstance(entry.value, list) else entry.value
        return first if self.doc.objectives[0].direction == "minimize" else -first

    def _archive_outside_top_k(self) -> None:
        done = sorted((e for e in self.entries.values() if e.state == "completed"), key=self.sort_key)
        keep = {e.task for e in done[: self.doc.save_top_k_tasks_only]}
        for entry in done:
            wanted = entry.task not in keep

            def apply(record: TaskRecord, wanted: bool = wanted) -> None:
                tags = [t for t in record.tags if t != "archived"]
                record.tags = [*tags, "archived"] if wanted else tags

            self.store.update(entry.task, apply)

    # -- limits and stops --------------------------------------------------------------------------
    def _job_deadlines(self) -> dict[int, float]:
        limit = self.doc.time_limit_per_job
        if not limit:
            return {}
        return {
            n: e.started + limit * 60 for n, e in self.entries.items() if e.state == "running" and e.started is not None
        }

    def _study_deadline(self) -> float | None:
        limit = self.doc.optimization_time_limit
        return None if not limit or self.doc.started is None else self.doc.started + limit * 60

    def _check_deadlines(self) -> None:
        now = time.time()
        for number, deadline in self._job_deadlines().items():
            if now >= deadline:
                self._stop_trial(
                    self.entries[number], f"reached time_limit_per_job ({self.doc.time_limit_per_job} min)"
                )

    def _check_budgets(self) -> None:
        if self.stopping:
            return
        deadline = self._study_deadline()
        if deadline is not None and time.time() >= deadline:
            self._stop_all(None, f"optimization_time_limit reached ({self.doc.optimization_time_limit} min)")
            return
        self._check_deadlines()
        limit = self.doc.compute_time_limit
        if limit and self._compute_used(time.time()) >= limit * 60:
            self._stop_all(None, f"compute_time_limit reached ({limit} min)")  # ClearML: all jobs aborted

    def _compute_used(self, now: float) -> float:
        """Seconds the trials have run, summed (running ones up to ``now``)."""
        return sum((e.ended or now) - e.started for e in self.entries.values() if e.started is not None)

    def _compute_deadline(self) -> float | None:
        """When the running trials use up ``compute_time_limit`` if nothing ends before."""
        limit = self.doc.compute_time_limit
        running = sum(1 for e in self.entries.values() if e.started is not None and e.ended is None)
        if not limit or not running or self.stopping:
            return None
        now = time.time()
        return now + max(0.0, limit * 60 - self._compute_used(now)) / running

    def _stop_all(self, status: str | None, message: str) -> None:
        """No new trial; abort the active ones. The loop goes on until they have ended, so that
        their outcomes are told; the study shows the stop at once."""
        self.stopping = message
        self.doc.message = message
        if status is not None:
            self.final_status = self.doc.status = status
            self._save()
        for number in self._active():
            entry = self.entries[number]
            if entry.state != "stopping":
                self._stop_trial(entry, message)

    # -- state ---------------------------------------------------------------------------------------
    def _recover(self) -> None:
        """After a restart: re-attach, launch what was booked but never written, reuse what Optuna
        handed out but was never booked."""
        for number, entry in sorted(self.entries.items()):
            if entry.active:
                self._sync(number)
            elif entry.state == "completed" and not entry.callback_done and entry not in self._completed:
                self._completed.append(entry)  # told before the restart, its callback not yet run
        booked = set(self.entries)
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in booked:
                self._book_and_launch(frozen.number, decode_all(self.space, frozen.params))

    def _put(self, entry: TrialEntry) -> None:
        studies.put_trial(self.conn, self.doc.id, entry.number, entry.model_dump())

    def _save(self) -> None:
        counts: dict[str, int] = {}
        for entry in self.entries.values():
            counts[entry.state] = counts.get(entry.state, 0) + 1
        self.doc.counts = counts
        studies.save(self.conn, self.doc.id, self.doc.model_dump(), self.doc.created)

    def _finish(self) -> StudyDoc:
        self._flush_completions()
        doc = self.doc
        doc.status = self.final_status
        doc.message = doc.message or self.stopping
        doc.ended = time.time()
        doc.best = self._best()
        self._save()
        return doc
