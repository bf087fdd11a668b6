"""A real redis-server for the tests: started on a free loopback port, stopped at the end."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis

from trainyard.embedded import redis_server_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process with AOF on, restartable on the same port and data folder."""

    def __init__(
        self,
        directory: Path,
        password: str | None = None,
        port: int | None = None,
        unixsocket: Path | None = None,
        bind: tuple[str, ...] = (),
    ):
        """``bind``: addresses it listens on besides 127.0.0.1 (a test network's, tests/netns.py)."""
        self.unixsocket = unixsocket
        self.bind = tuple(bind)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def url_at(self, address: str) -> str:
        """The URL through another of its addresses (one of ``bind``)."""
        return self.url.replace("@127.0.0.1:", f"@{address}:").replace("//127.0.0.1:", f"//{address}:")

    def start(self) -> RedisServer:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            *self.bind,
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.unixsocket:
            args += ["--unixsocket", str(self.unixsocket), "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the server says when it is ready: no polling
            lines.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server did not start:\n" + "".join(lines[-20:]))
        # keep draining its output so it never blocks on a full pipe
        self._drain = threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True)
        self._drain.start()
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._drain.join(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _drain(stream) -> None:
    for _ in stream:
        pass


def wait_gone(url: str, timeout: float = 10.0) -> None:
    """Until the port stops answering (used after stopping a server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.2).ping()
        except redis.ConnectionError:
            return
        time.sleep(0.05)
    raise AssertionError(f"{url} still answers")
