"""What every execution mode shares: the ``Mode`` protocol (prepare, then launch), the worker's
mode settings, and ``Job``, the one task a mode prepares (its record, run folder and code)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ...queues.record import TaskRecord
from ..gpus import pinning_env
from ..launch import LaunchSpec, PrepareError, args_flags, task_env

if TYPE_CHECKING:
    from ..reporter import Reporter


class Launched(Protocol):
    """A started task: stream its output, wait for it, end it."""

    pgid: int | None

    def streams(self) -> list[tuple[str, Iterator[bytes]]]: ...

    def wait(self, timeout: float | None) -> int:
        """The exit code; raises subprocess.TimeoutExpired when ``timeout`` passes first."""

    def terminate(self, grace_s: float, exited: threading.Event) -> None:
        """SIGTERM, up to ``grace_s`` seconds, then SIGKILL."""

    def cleanup(self) -> None:
        """Make sure nothing of the task is left (grandchildren, the container)."""


@dataclass
class ModeSettings:
    """The worker's settings that modes read."""

    home: Path
    worker: str
    default_mode: str = "local"
    docker_image: str | None = None
    docker_network: str | None = None
    redis_url: str | None = None
    env_cache_size: int = 20
    installer: str = "auto"


@dataclass
class Job:
    """One task attempt being prepared: what a mode needs to know and may record."""

    record: TaskRecord
    run_dir: Path
    code: Path | None  # the task's code folder (repository root), None for a plain command
    reporter: Reporter | None
    settings: ModeSettings
    record_environment: Callable[[dict], None] = field(default=lambda environment: None)

    @property
    def gpus(self) -> list[int]:
        """The GPUs this task holds (given by its worker when it took the task)."""
        return [int(g) for g in self.record.runtime.gpus]

    def log(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter.system(line)

    def argv(self, python: str) -> tuple[list[str], Path | None]:
        """The command to run and its working folder: the script's command, or ``python -u entry
        --args``; PrepareError when the entry point is missing."""
        script = self.record.script
        workdir = self.code / script.working_dir if self.code is not None else None
        if script.command:
            return list(script.command), workdir
        if not script.entry_point:
            raise PrepareError("the task has neither an entry point nor a command")
        if workdir is None or not (workdir / script.entry_point).is_file():
            raise PrepareError(f"entry point not found: {script.entry_point} in {workdir or 'the task'}")
        return [python, "-u", script.entry_point, *args_flags(self.record.parameters)], workdir

    def host_env(self) -> dict[str, str]:
        """The environment of a task process started on this host (local, venv, conda)."""
        return task_env(self.record, self.run_dir, pinning_env(self.gpus), self.settings.redis_url)


class Mode(Protocol):
    """One execution mode: a module in this package defining ``MODE``."""

    name: str  # the record's ExecutionMode value

    def prepare(self, job: Job) -> LaunchSpec:
        """Build what the task needs (environment, image, paths) and say what to start."""

    def launch(self, spec: LaunchSpec, log: Callable[[str], None]) -> Launched:
        """Start it."""
