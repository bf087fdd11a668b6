"""Preparing a claimed task: its source checkout, then its execution mode's ``prepare``.

The task's own ``execution.mode`` wins; the worker's ``--mode`` (or ``--docker``) is the default.
A mode this worker cannot serve (no Docker engine, no conda) fails the task with the reason
rather than re-queueing it, so a task never bounces between workers that all lack the same thing.
"""

from __future__ import annotations

from pathlib import Path

from ..queues.record import TaskRecord
from ..queues.store import TaskStore
from . import modes
from .launch import LaunchSpec
from .modes import Job, ModeSettings
from .reporter import Reporter
from .source import GitCredentials, SourceCache


class Preparer:
    """Callable the executor uses: (record, run folder, reporter) -> what to start."""

    def __init__(self, settings: ModeSettings, store: TaskStore):
        self.s = settings
        self.store = store
        self.sources_root = settings.home / "git"

    def __call__(self, record: TaskRecord, run_dir: Path, reporter: Reporter) -> LaunchSpec:
        name = record.execution.mode.value if record.execution.mode else self.s.default_mode
        if record.container.image and not record.execution.mode and self.s.default_mode == "docker":
            name = "docker"
        reporter.system(f"mode: {name}")
        mode = modes.get(name)
        if name != "local" or record.script.repository:
            reporter.start()  # a checkout or an environment may take a while: stream its lines
        code = self._code(record, run_dir, reporter)
        job = Job(record, run_dir, code, reporter, self.s, lambda env: self._record_environment(record.id, env))
        return mode.prepare(job)

    def _code(self, record: TaskRecord, run_dir: Path, reporter: Reporter) -> Path | None:
        """The folder holding the task's code (repository root), or None for a plain command."""
        script = record.script
        folder: Path | None = None
        if script.repository:
            local = Path(script.repository)
            if local.is_dir() and not (local / ".git").exists() and not script.commit:
                folder = local  # a plain folder, not a repository: run it in place
            else:
                cache = SourceCache(self.sources_root, reporter.system, GitCredentials.from_env())
                folder = cache.checkout(script, run_dir / "src")
        if script.source is not None:
            # a standalone script (or a function step): written beside the checkout's modules, if any
            folder = folder or run_dir / "src"
            target = folder / script.working_dir / (script.entry_point or "main.py")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(script.source)
        return folder

    def _record_environment(self, task_id: str, environment: dict) -> None:
        def apply(rec: TaskRecord) -> None:
            rec.runtime.environment = environment

        self.store.update(task_id, apply)
