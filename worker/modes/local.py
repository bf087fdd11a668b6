"""local mode: the task runs as a process group on the worker's host, with the worker's Python."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from .. import guard, process, tasklib
from ..launch import LaunchSpec, PrepareError
from .base import Job, Launched

READ_CHUNK = 65536


class LocalMode:
    name = "local"

    def prepare(self, job: Job) -> LaunchSpec:
        argv, workdir = job.argv(sys.executable)
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # local mode: "python" means this worker's Python
        env = job.host_env()
        env["PYTHONPATH"] = tasklib.with_path(str(tasklib.link(job.run_dir, standalone=False)), env.get("PYTHONPATH"))
        return LaunchSpec(argv, workdir or job.run_dir, env, mode=self.name)

    def launch(self, spec: LaunchSpec, log: Callable[[str], None]) -> Launched:
        return LocalLaunch(spec)


class LocalLaunch:
    """A process started as the leader of its own session and process group (also what venv and
    conda modes start)."""

    def __init__(self, spec: LaunchSpec):
        program = spec.argv[0]
        found = shutil.which(program, path=spec.env.get("PATH")) if "/" not in program else program
        if not found or not os.access(spec.cwd / found if "/" in program else found, os.X_OK):
            raise PrepareError(f"cannot start {program}: not found or not executable")
        try:
            self.proc = process.spawn(spec.argv, spec.cwd, spec.env)
        except OSError as exc:
            raise PrepareError(f"cannot start {spec.argv[0]}: {exc.strerror or exc}") from None
        self.pgid = self.proc.pid
        self.task_id = spec.env.get("TRAINYARD_TASK_ID")
        self.attempt = spec.env.get("TRAINYARD_ATTEMPT")
        self.ended = threading.Event()  # set once nothing of the task may write any more

    def streams(self) -> list[tuple[str, Iterator[bytes]]]:
        return [("out", _chunks(self.proc.stdout, self.ended)), ("err", _chunks(self.proc.stderr, self.ended))]

    def wait(self, timeout: float | None) -> int:
        return self.proc.wait(timeout=timeout)

    def terminate(self, grace_s: float, exited: threading.Event) -> None:
        if self.proc.poll() is None:
            process.end_group(self.proc.pid, grace_s, exited)

    def cleanup(self) -> None:
        """Nothing of the task outlives it: its process group, then every process that carries its
        attempt in its environment (those that left the group: ``setsid``, a double fork)."""
        process.signal_group(self.proc.pid, signal.SIGKILL)
        if self.task_id:
            guard.kill_task(self.task_id, int(self.attempt) if self.attempt else None)
        self.ended.set()  # the output readers take what is buffered and stop, whoever holds the pipes


def _chunks(stream, ended: threading.Event) -> Iterator[bytes]:
    """Read a pipe until end-of-file, or, once the task has ended, until it holds nothing more: a
    process that escaped with a copy of the pipe never keeps the task from ending."""
    fd = stream.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    try:
        while True:
            finished = ended.is_set()
            if not poller.poll(0 if finished else 250):
                if finished:
                    return
                continue
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError:
                return
            if not chunk:
                return
            yield chunk
    finally:
        with contextlib.suppress(OSError):
            stream.close()


MODE = LocalMode()
