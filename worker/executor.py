"""Running one claimed task: prepare, start, stream, supervise (abort, time limit), finish."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ..queues.dispatch import Dispatcher
from ..queues.record import TaskRecord
from . import modes
from .artifacts import ArtifactStore
from .guard import Guard
from .launch import LaunchSpec, PrepareError
from .modes import Launched
from .monitor import GpuUsage
from .reporter import Reporter
from .runfolder import create_run_folder
from .secrets import Redactor, resolve_record

log = logging.getLogger("trainyard.worker")


@dataclass
class RunSettings:
    """What every task run of a worker shares."""

    dispatcher: Dispatcher
    conn: redis.Redis
    runs_dir: Path
    artifacts: ArtifactStore
    grace_s: float = 10.0
    keep_runs: bool = False
    redactor: Redactor = field(default_factory=lambda: Redactor(()))
    guard: Guard | None = None  # ends what runs if the worker dies (worker/guard.py)


class TaskRun:
    """One attempt of one task on this worker. ``run()`` blocks until the task has ended."""

    def __init__(
        self,
        settings: RunSettings,
        record: TaskRecord,
        gpus: list[int],
        prepare: Callable[[TaskRecord, Path, Reporter], LaunchSpec],
    ):
        self.s = settings
        self.record = record
        self.gpus = gpus
        self.prepare = prepare
        self.launched: Launched | None = None
        self.run_dir: Path | None = None  # set when the run ended: cleanup() removes it
        self.abort_reason: str | None = None
        self.requeue_reason: str | None = None
        self.fence_reason: str | None = None
        # when this attempt's claim reached Redis (time.monotonic()): the claim's own timestamp, fresh
        # until the heartbeats take over; the fence watchdog counts it as contact
        self.contact = time.monotonic()
        self.timed_out = False
        self.gpu_usage = GpuUsage(record.runtime.gpus)  # fed by the worker's heartbeat samples
        self._lock = threading.Lock()
        self._exited = threading.Event()

    @property
    def task_id(self) -> str:
        return self.record.id

    @property
    def attempt(self) -> int:
        """This run's attempt number: reports of an attempt that was taken away are dropped."""
        return self.record.runtime.attempt

    @property
    def exited(self) -> bool:
        """The task's process (or container) has ended; only its report may still be pending."""
        return self._exited.is_set()

    # -- control from other threads --------------------------------------------------------
    def request_abort(self, reason: str = "aborted by user") -> None:
        """End the task now (TERM, grace, KILL); it finishes as aborted."""
        with self._lock:
            if self.abort_reason or self.requeue_reason or self.fence_reason:
                return
            self.abort_reason = reason
        self._end_group()

    def request_requeue(self, reason: str) -> None:
        """End the task now and put it back at the front of its queue (worker shutdown)."""
        with self._lock:
            if self.abort_reason or self.requeue_reason or self.fence_reason:
                return
            self.requeue_reason = reason
        self._end_group()

    def request_fence(self, reason: str, grace_s: float) -> None:
        """End the task now, with a short grace: its worker lost Redis and may be declared dead, after
        which another worker may start it. The attempt ends as lost (re-queued while retries last)."""
        with self._lock:
            if self.abort_reason or self.requeue_reason or self.fence_reason or self._exited.is_set():
                return  # (a task that has exited and waits to report its outcome keeps that outcome)
            self.fence_reason = reason
        self._end_group(min(grace_s, self.s.grace_s))

    def _end_group(self, grace_s: float | None = None) -> None:
        launched = self.launched
        grace = self.s.grace_s if grace_s is None else grace_s
        if launched is not None and not self._exited.is_set():
            threading.Thread(target=launched.terminate, args=(grace, self._exited), daemon=True).start()

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> None:
        """Run the task; whatever goes wrong here, the task ends with a status (never left running)."""
        self._guard("start")
        try:
            self._run()
        except Exception as exc:  # the run folder, the reporter, the disk: fail the task, keep the worker
            log.exception("task %s: the worker could not run it", self.task_id)
            for pause in _backoff():
                try:
                    text = self.s.redactor.text(f"worker error: {type(exc).__name__}: {exc}")
                    self.s.dispatcher.finish(self.task_id, "failed", error=text, attempt=self.attempt)
                    return
                except (redis.ConnectionError, redis.TimeoutError):
                    time.sleep(pause)
        finally:
            self._guard("end")

    def _guard(self, op: str, extra: str = "") -> None:
        if self.s.guard is not None:
            self.s.guard.note(op, self.task_id, self.attempt, extra)

    def _run(self) -> None:
        record = self.record
        run_dir = self.s.runs_dir / f"{record.id}-{record.runtime.attempt}-{os.urandom(3).hex()}"
        try:  # secret references filled in: this copy goes to the task process only, never to Redis
            resolved, unresolved = resolve_record(record), None
        except PrepareError as exc:
            resolved, unresolved = record, exc
        create_run_folder(
            run_dir,
            {
                "id": record.id,
                "name": record.name,
                "project": record.project,
                "attempt": record.runtime.attempt,
                "parameters": resolved.parameters,
                "configuration": record.configuration,
            },
        )
        log_file = run_dir / "output.log"
        reporter = Reporter(
            self.s.conn,
            record.id,
            self.s.dispatcher.worker,
            run_dir,
            self.s.artifacts,
            log_file,
            self.s.redactor,
            attempt=record.runtime.attempt,
        )
        outcome, exit_code, error = "failed", None, None
        try:
            gpus = ",".join(map(str, self.gpus)) if self.gpus else "none"
            reporter.system(
                f"task {record.id} attempt {record.runtime.attempt} on {self.s.dispatcher.worker} "
                f"({self.s.dispatcher.host}), GPUs: {gpus}"
            )
            if unresolved is not None:
                raise unresolved
            spec = self.prepare(resolved, run_dir, reporter)
            try:
                outcome, exit_code, error = self._execute(spec, reporter)
            finally:
                for release in spec.release:
                    release()
        except PrepareError as exc:
            error = str(exc)
            reporter.system(f"cannot start: {error}")
        except Exception as exc:  # a bug or an OS failure must not take the worker down
            log.exception("task %s: unexpected error", record.id)
            error = f"worker error: {type(exc).__name__}: {exc}"
            reporter.system(error)
        finally:
            reporter.close()
        if outcome == "completed" and reporter.failure:  # the task marked itself failed, then exited 0
            outcome, error = "failed", reporter.failure
        self._finish(outcome, exit_code, error, reporter, log_file)
        self.run_dir = run_dir

    def cleanup(self) -> None:
        """Remove the run folder (unless kept). Called after the worker took its next task: the
        task has ended and its log is stored, so this is off the path from one task to the next."""
        if self.run_dir is not None and not self.s.keep_runs:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _launch(self, spec: LaunchSpec, reporter: Reporter) -> Launched:
        if spec.docker is not None:
            self._guard("docker", spec.docker.name)  # before the container exists
        return modes.get(spec.mode).launch(spec, reporter.system)

    def _execute(self, spec: LaunchSpec, reporter: Reporter) -> tuple[str, int | None, str | None]:
        record = self.record
        reporter.system(f"starting: {' '.join(spec.argv)}")
        launched = self.launched = self._launch(spec, reporter)
        reporter.start()
        try:
            readers = [
                threading.Thread(target=_pump, args=(chunks, name, reporter), daemon=True)
                for name, chunks in launched.streams()
            ]
            for reader in readers:
                reader.start()
            if self.fence_reason:  # asked before the task existed
                self._end_group(0.0)
            elif self.abort_reason or self.requeue_reason:
                self._end_group()
            limit = record.execution.time_limit
            try:
                code = launched.wait(limit)
            except subprocess.TimeoutExpired:
                self.timed_out = True
                launched.terminate(self.s.grace_s, self._exited)
                code = launched.wait(None)
            self._exited.set()
        finally:
            launched.cleanup()
        for reader in readers:
            reader.join(timeout=5)
        if self.abort_reason:
            return "aborted", code, None
        if self.fence_reason:
            return "lost", code, self.fence_reason
        if self.timed_out:
            return "failed", code, f"time limit of {limit:g}s exceeded"
        if code == 0:
            return "completed", 0, None
        if code < 0:
            return "failed", code, f"killed by signal {signal.Signals(-code).name}"
        if code in (137, 143) and spec.docker is not None:
            return "failed", code, f"container killed (exit code {code})"
        # the exception line, or trainyard's own refusal (function steps, the job runner): stderr's last line
        return "failed", code, reporter.last_error_line or f"exit code {code}"

    def _finish(
        self, outcome: str, exit_code: int | None, error: str | None, reporter: Reporter, log_file: Path
    ) -> None:
        d = self.s.dispatcher
        error = self.s.redactor.text(error)
        log_fields = self._log_fields(log_file)
        for pause in _backoff():
            try:
                if outcome == "lost":
                    done = d.finish(
                        self.task_id, "lost", exit_code=exit_code, error=error, attempt=self.attempt, also=log_fields
                    )
                elif self.requeue_reason and not self._abort_was_requested():
                    done = d.requeue(self.task_id, reason=self.requeue_reason, attempt=self.attempt, also=log_fields)
                elif outcome == "aborted" or self.abort_reason:
                    done = d.finish(self.task_id, "aborted", exit_code=exit_code, attempt=self.attempt, also=log_fields)
                else:
                    done = d.finish(
                        self.task_id,
                        outcome,
                        exit_code=exit_code,
                        error=error,
                        log_tail=reporter.tail_lines() if outcome == "failed" else [],
                        attempt=self.attempt,
                        also=log_fields,
                    )
                if done is None and log_fields is not None:  # no longer ours: record the log all the same
                    self._store_log(log_fields)
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("task %s: Redis unreachable while finishing (%s); retrying", self.task_id, exc)
                time.sleep(pause)

    def _abort_was_requested(self) -> bool:
        """An abort asked for before the worker stopped wins over putting the task back."""
        try:
            record = self.s.dispatcher.store.get(self.task_id)
        except Exception:  # noqa: BLE001 - gone or unreadable: requeue as planned
            return False
        if record.runtime.abort_requested:
            self.abort_reason = record.status_message or "aborted by user"
            return True
        return False

    def _log_fields(self, log_file: Path) -> Callable[[TaskRecord], None] | None:
        """Store the log; the change that records its uri and this attempt's GPU usage summary
        (made in the same write as the task's end), or None when there is nothing to record."""
        uri = (
            self.s.artifacts.put_log(self.task_id, self.record.runtime.attempt, log_file)
            if log_file.is_file()
            else None
        )
        usage = self.gpu_usage.summary()
        if uri is None and not usage:
            return None

        def apply(rec: TaskRecord) -> None:
            if rec.runtime.attempt != self.attempt:
                return  # a newer attempt owns the record now (its own log comes with it)
            if uri is not None:
                rec.runtime.log_uri = uri
            rec.runtime.gpu_usage = usage

        return apply

    def _store_log(self, apply: Callable[[TaskRecord], None]) -> None:
        """Record the log fields on their own (the task was taken from this worker meanwhile)."""
        try:
            self.s.dispatcher.store.update(self.task_id, apply)
        except Exception:  # the task record may be gone; the log file stays in the store
            log.debug("could not record the log uri of %s", self.task_id)


def _backoff():
    pause = 0.2
    while True:
        yield pause
        pause = min(pause * 2, 5.0)


def _pump(chunks, name: str, reporter: Reporter) -> None:
    """Split output into lines (a carriage return rewrites the line, as a terminal shows it)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            reporter.line(name, raw.rsplit(b"\r", 1)[-1].decode("utf-8", errors="replace"))
        if len(buffer) > 1 << 16:  # an endless line: cut it
            reporter.line(name, buffer.rsplit(b"\r", 1)[-1].decode("utf-8", errors="replace"))
            buffer = b""
    if buffer:
        reporter.line(name, buffer.rsplit(b"\r", 1)[-1].decode("utf-8", errors="replace"))
