"""`trainyard web` as a real subprocess for the live and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from redis_server import free_port


class WebServer:
    """Starts `python -m trainyard web --port N` with ``env``; ``token`` holds the printed admin token."""

    def __init__(self, env: dict[str, str], folder: Path, host: str = "127.0.0.1"):
        self.port = free_port()
        self.host = host
        self.url = f"http://{host}:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.err_path = folder / f"web-{self.port}.err"
        self._err = open(self.err_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trainyard", "web", "--port", str(self.port)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self.token: str | None = None
        self.rest = ""  # what stdout held when the server stopped

    def start(self, timeout: float = 60) -> WebServer:
        """Read the first-start token line (if any), then wait until the port accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"trainyard web exited {self.proc.returncode}: {self.stderr()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)  # readiness probe for a port, not a timing assertion
        raise AssertionError(f"trainyard web did not listen within {timeout}s: {self.stderr()}")

    def read_token(self) -> str | None:
        """The admin token line that a first start prints (stdout is closed when the server stops)."""
        line = self.proc.stdout.readline() if not self.proc.stdout.closed else self.rest
        if "admin token" in line:
            self.token = line.rsplit(" ", 1)[-1].strip()
        return self.token

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.err_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        if not self.proc.stdout.closed:
            self.rest = self.proc.stdout.read()
            self.proc.stdout.close()
        if not self._err.closed:
            self._err.close()
