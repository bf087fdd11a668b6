"""Helpers to run real worker processes and to wait on task events (never on sleeps)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from trainyard import Task, TaskStatus
from trainyard.queues import keys, logs

FAST = {"TRAINYARD_HEARTBEAT_S": "0.5", "TRAINYARD_WORKER_TTL_S": "5", "TRAINYARD_DEAD_AFTER_S": "5"}


class WorkerProcess:
    """`trainyard worker ...` in a subprocess, with its stderr kept for assertions."""

    def __init__(
        self, *args: str, env: dict | None = None, fast: bool = True, host: str | None = None, netns: str | None = None
    ):
        """``host``: run the worker under that host name (its own UTS namespace: another host as far
        as trainyard can tell, on this machine); ``netns``: inside that named network namespace (its
        network, tests/netns.py). The wrappers exec, so ``proc.pid`` is the worker's."""
        self.args = args
        full_env = {**os.environ, **(FAST if fast else {}), **(env or {})}
        self.log_path = Path(os.environ["TRAINYARD_HOME"]) / f"worker-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115
        wrap = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host] if host else []
        if netns:
            wrap = ["nsenter", f"--net=/run/netns/{netns}", *wrap]
        self.proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "trainyard", "worker", *args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def stop(self) -> None:
        """Stop now but cleanly (SIGQUIT: running tasks are ended and re-queued), else kill."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for_log(conn: redis.Redis, task_id: str, text: str, timeout: float = 60, exact: bool = False) -> str:
    """Block on the task's log stream until a line containing (or, ``exact``, equal to) ``text`` arrives."""
    deadline = time.monotonic() + timeout
    cursor = "0-0"
    seen = []
    while time.monotonic() < deadline:
        reply = conn.xread({keys.log(task_id): cursor}, block=500, count=100)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                cursor = entry_id
                line = fields[b"l"].decode()
                seen.append(line)
                if (line == text) if exact else (text in line and not line.startswith("[trainyard] starting:")):
                    return line
    raise AssertionError(f"no log line with {text!r} in {timeout}s; saw: {seen[-20:]}")


def wait_status(task: Task, *statuses: TaskStatus, timeout: float = 60) -> Task:
    return Task.get(task.id).wait(timeout=timeout, statuses=statuses or None)


def log_text(conn: redis.Redis, task_id: str) -> str:
    return "\n".join(line.text for line in logs.read(conn, task_id))


def wait_worker_registered(conn: redis.Redis, name: str, timeout: float = 30) -> None:
    """Until the worker's registry entry exists (it is written before the worker takes work)."""
    deadline = time.monotonic() + timeout
    cursor = "0-0"
    while not conn.exists(keys.worker(name)):
        if time.monotonic() > deadline:
            raise AssertionError(f"worker {name} did not register")
        reply = conn.xread({keys.EVENTS: cursor}, block=500, count=500)  # woken by its worker_up event
        for _, entries in reply or []:
            cursor = entries[-1][0]


def wait_worker_state(conn: redis.Redis, name: str, state: str, timeout: float = 30) -> None:
    """Until the worker announces ``state`` (draining, stopping) on the event stream."""
    deadline = time.monotonic() + timeout
    cursor = "0-0"
    while time.monotonic() < deadline:
        reply = conn.xread({keys.EVENTS: cursor}, block=500, count=500)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                cursor = entry_id
                if (
                    fields.get(b"kind") == b"worker_state"
                    and fields.get(b"worker") == name.encode()
                    and fields.get(b"status") == state.encode()
                ):
                    return
    raise AssertionError(f"worker {name} never became {state}")


class ServiceProcess:
    """A service (``python -m trainyard.controller.<module>``) in the foreground of a subprocess."""

    def __init__(self, module: str, env: dict | None = None):
        full_env = {**os.environ, **FAST, **(env or {})}
        self.log_path = Path(os.environ["TRAINYARD_HOME"]) / f"service-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"trainyard.controller.{module}"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_service(conn: redis.Redis, kind: str, count: int = 1, timeout: float = 30) -> None:
    """Until ``count`` services of ``kind`` announce themselves (their first heartbeat)."""
    from trainyard.queues import services

    deadline = time.monotonic() + timeout
    cursor = "0-0"
    while len(services.running(conn, kind)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} {kind} service(s) did not start")
        reply = conn.xread({keys.EVENTS: cursor}, block=500, count=500)  # woken by service_up events
        for _, entries in reply or []:
            cursor = entries[-1][0]
