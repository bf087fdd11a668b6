"""Helpers shared by the benchmarks: a throwaway redis-server, a timer, rich tables, JSON results."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from trainyard.embedded import redis_server_binary

REPO = Path(__file__).resolve().parent.parent
READY_LINE = "Ready to accept connections"

# Piped output (CI logs, files) gets 120 columns instead of rich's default 80.
console = Console(width=None if sys.stdout.isatty() else 120)


# -- a throwaway redis-server -----------------------------------------------------------------
def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server on a free loopback port, no persistence, in a temp dir; a context manager.

    Readiness is read from the server's own stdout ("Ready to accept connections"), with a
    timeout; its output keeps being drained so it never blocks on a full pipe.
    """

    def __init__(self, start_timeout: float = 15.0, extra_args: Sequence[str] = ()):
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.binary = redis_server_binary()
        self.port: int | None = None
        self.directory: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=50)
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("redis-server is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, **kwargs)

    def start(self, attempts: int = 3) -> RedisServer:
        self.directory = Path(tempfile.mkdtemp(prefix="trainyard-bench-redis-"))
        error = ""
        for _ in range(attempts):  # another process may grab the port between probe and bind
            if self._try_start(free_port()):
                return self
            error = "".join(self._lines).strip() or "no output"
            self._kill()
        self.cleanup()
        raise RuntimeError(f"could not start {self.binary}:\n{error}")

    def _try_start(self, port: int) -> bool:
        assert self.directory is not None
        self.port = port
        self._lines.clear()
        self._ready.clear()
        args = [
            self.binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.directory),
            *self.extra_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read_output, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._ready.wait(timeout=0.05):
                return True
            if self.proc.poll() is not None:  # exited (e.g. port taken)
                self._reader.join(timeout=2)
                return self._ready.is_set()
        self._lines.append(f"(no '{READY_LINE}' within {self.start_timeout:g}s)\n")
        return False

    def _read_output(self, stream) -> None:
        for line in stream:
            self._lines.append(line)
            if READY_LINE in line:
                self._ready.set()

    def version(self) -> str:
        return str(self.client().info("server").get("redis_version", "?"))

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.proc = None

    def stop(self) -> None:
        self._kill()

    def cleanup(self) -> None:
        self._kill()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def used_memory(conn: redis.Redis) -> int:
    """Redis ``INFO memory`` ``used_memory`` in bytes.

    The client is disconnected first, so the query and reply buffers of a big pipeline it just
    sent are freed and not counted as data.
    """
    conn.connection_pool.disconnect()
    return int(conn.info("memory")["used_memory"])


# -- timing -----------------------------------------------------------------------------------
class Timer:
    """``with Timer() as t: ...`` then ``t.elapsed`` (seconds, perf_counter)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def summarize(values: Sequence[float]) -> dict[str, float]:
    """count, mean, median, p90, p99 (nearest rank), min and max of ``values``."""
    if not values:
        raise ValueError("no values to summarize")
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {
        "count": len(ordered),
        "mean": statistics.fmean(ordered),
        "median": statistics.median(ordered),
        "p90": rank(90),
        "p99": rank(99),
        "min": ordered[0],
        "max": ordered[-1],
    }


def read_stamp(conn: redis.Redis, task_id: str) -> float:
    """A task's own start time: the first line of its stdout (in its Redis log) that is a float,
    as printed by ``python -S -c "import time,sys; sys.stdout.write(repr(time.time()))"``."""
    from trainyard.queues import logs

    for line in logs.read(conn, task_id):
        if line.stream == "out":
            try:
                return float(line.text)
            except ValueError:
                continue
    raise RuntimeError(f"task {task_id}: no stamp in its log")


# -- child processes --------------------------------------------------------------------------
class ChildProcesses:
    """Processes a benchmark starts (workers...), all stopped when the context exits, even on error.

    Each child gets its own session, stdin from /dev/null and its stdout and stderr in a log file
    in a temp folder (also a place for the children's own files: ``.directory``), so a chatty
    child never blocks on a full pipe. ``stop`` asks with a signal (SIGTERM by default), waits,
    then SIGKILLs what is left; ``tail`` shows a child's last output lines (for error messages).
    """

    def __init__(self, prefix: str = "trainyard-bench-"):
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        self.procs: list[subprocess.Popen] = []
        self._logs: dict[int, Path] = {}

    def start(
        self, argv: Sequence[str], name: str, env: Mapping[str, str] | None = None, cwd: Path = REPO
    ) -> subprocess.Popen:
        log = self.directory / f"{name}.{len(self.procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=str(cwd),
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        self._logs[proc.pid] = log
        return proc

    def tail(self, proc: subprocess.Popen, lines: int = 20) -> str:
        try:
            text = self._logs[proc.pid].read_text(errors="replace")
        except (KeyError, OSError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(
        self, procs: Iterable[subprocess.Popen] | None = None, sig: int = signal.SIGTERM, timeout: float = 15.0
    ) -> None:
        """Signal every given (default: every) live child, then wait for all of them together."""
        chosen = list(self.procs if procs is None else procs)
        for proc in chosen:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        for proc in chosen:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs = [p for p in self.procs if p.poll() is None]

    def cleanup(self) -> None:
        self.stop(timeout=10.0)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ChildProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


# -- output -----------------------------------------------------------------------------------
def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None) -> None:
    """A rich table; the first column is left-aligned, the others right-aligned."""
    table = Table(title=title, caption=caption, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i > 0)
    for row in rows:
        table.add_row(*(cell if isinstance(cell, str) else str(cell) for cell in row))
    console.print(table)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def machine_facts(conn: redis.Redis | None = None) -> dict[str, Any]:
    """Where the figures came from: machine, interpreter, library and server versions, date."""
    facts: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "trainyard": _version("trainyard"),
        "rq": _version("rq"),
        "redis_py": _version("redis"),
        "git_commit": _git_commit(),
    }
    if conn is not None:
        info = conn.info("server")
        facts["redis_version"] = info.get("redis_version")
        facts["redis_allocator"] = conn.info("memory").get("mem_allocator")
    return facts


def write_json(path: str | Path, benchmark: str, results: dict[str, Any], facts: dict[str, Any]) -> Path:
    """Write ``{"benchmark", "machine", "argv", "results"}`` to ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": benchmark, "machine": facts, "argv": sys.argv[1:], "results": results}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path
