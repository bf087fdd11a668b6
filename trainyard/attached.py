"""Running this very process as a task: what ``Task.init`` does outside a worker.

A draft task is marked running in this process (it heartbeats like a worker, so a process that dies
is reaped like any task), gets a run folder (``TRAINYARD_RUN_DIR``) so that ``current_task()``
reports as it would under a worker, and its console output, metrics, outputs and artifacts reach
Redis as they happen. It ends completed when the process exits normally, failed (with the
exception's last line) on an uncaught exception or when it asked to (``current_task().fail_at_exit``),
or earlier with :meth:`AttachedRun.end`.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import sys
import tempfile
import threading
import traceback
from pathlib import Path

from redis import Redis

from .controller.in_process import LocalController
from .queues.store import TaskStore
from .runtime.task_api import ENV_RUN_DIR, ENV_TASK_ID
from .settings import settings
from .worker.artifacts import ArtifactStore
from .worker.reporter import Reporter
from .worker.runfolder import create_run_folder


class _Tee(io.TextIOBase):
    """A text stream that writes through to ``inner`` and hands each whole line to ``sink``."""

    def __init__(self, inner, stream: str, sink):
        self._inner, self._stream, self._sink = inner, stream, sink
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self._inner.write(text)
        with self._lock:
            data = self._partial + text
            *lines, self._partial = data.split("\n")
        for line in lines:
            self._sink(self._stream, line)
        return written if written is not None else len(text)

    def flush(self) -> None:
        self._inner.flush()

    def drain(self) -> None:
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest:
            self._sink(self._stream, rest)

    def fileno(self) -> int:
        return self._inner.fileno()

    def isatty(self) -> bool:
        return self._inner.isatty()

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")


class AttachedRun:
    """This process runs ``task_id`` (a draft): start with :meth:`start`, end with :meth:`end`
    (called at exit when not called before)."""

    def __init__(self, conn: Redis, task_id: str):
        self.conn = conn
        self.task_id = task_id
        self.holder = LocalController(conn, task_id)
        self.reporter: Reporter | None = None
        self.run_dir: Path | None = None
        self._tees: list[_Tee] = []
        self._ended = False
        self._error: str | None = None
        self._previous_hook = None

    def start(self) -> AttachedRun:
        self.holder.__enter__()
        record = TaskStore(self.conn).get(self.task_id)
        home = settings().home
        home.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"attached-{self.task_id}-", dir=str(home)))
        create_run_folder(self.run_dir / "run", record)
        self.reporter = Reporter(
            self.conn,
            self.task_id,
            self.holder.name,
            self.run_dir / "run",
            ArtifactStore(settings().artifacts_url),
            self.run_dir / "console.log",
            attempt=record.runtime.attempt,
        )
        self.reporter.start()
        os.environ[ENV_RUN_DIR] = str(self.run_dir / "run")
        os.environ[ENV_TASK_ID] = self.task_id
        for name, stream in (("stdout", "out"), ("stderr", "err")):
            tee = _Tee(getattr(sys, name), stream, self.reporter.line)
            self._tees.append(tee)
            setattr(sys, name, tee)
        self._previous_hook = sys.excepthook
        sys.excepthook = self._excepthook
        atexit.register(self.end)
        return self

    def _excepthook(self, kind, value, tb) -> None:
        lines = traceback.format_exception_only(kind, value)
        self._error = (lines[-1].strip() if lines else kind.__name__)[:500]
        (self._previous_hook or sys.__excepthook__)(kind, value, tb)

    def end(self, outcome: str | None = None, error: str | None = None) -> None:
        """Flush everything and end the task (completed unless an exception ended the process)."""
        if self._ended:
            return
        self._ended = True
        atexit.unregister(self.end)
        for tee in self._tees:
            tee.drain()
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._previous_hook or sys.__excepthook__
        for name, tee in zip(("stdout", "stderr"), self._tees):
            if getattr(sys, name) is tee:
                setattr(sys, name, tee._inner)
        try:
            if self.reporter is not None:
                self.reporter.close(retry_for_s=30.0)  # reads the last events: a fail_at_exit among them
            error = error or self._error or (self.reporter.failure if self.reporter is not None else None)
            outcome = outcome or ("failed" if error else "completed")
            self.holder.finish(outcome, error)
        finally:
            self.holder.__exit__(None, None, None)
            for key in (ENV_RUN_DIR, ENV_TASK_ID):
                os.environ.pop(key, None)
            if self.run_dir is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    @property
    def ended(self) -> bool:
        return self._ended
