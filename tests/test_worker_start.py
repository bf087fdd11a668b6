"""A worker started before its Redis waits for it (a fleet booting with its Redis, a Redis restart);
a wrong setting is still refused at once, in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from chaos.proxy import CuttableProxy
from redis_server import RedisServer
from test_cli import one_error_line

from trainyard import Queue, Task, TaskStatus
from trainyard.connection import reset_connections


def _worker(url: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TRAINYARD_REDIS_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "trainyard", "worker", *args], stderr=subprocess.PIPE, text=True, env=env
    )


def _waits_then_runs(server: RedisServer, url: str, queue: str, secret: str, cause: str) -> None:
    """Start a worker on ``url`` while ``server`` is down: it says once that it waits (one line, the
    password hidden, naming ``cause``) and stays up; once ``server`` starts, it runs a task."""
    proc = _worker(url, "-q", queue, "--cpu-only", "--create-queue", "--wait-redis", "300")
    said: list[str] = []
    try:
        first = proc.stderr.readline()
        assert "cannot reach Redis at redis://:***@127.0.0.1" in first, first
        assert cause in first and "waiting up to 300s" in first, first
        assert secret not in first
        assert proc.poll() is None
        threading.Thread(target=lambda: said.extend(proc.stderr), daemon=True).start()
        server.start()
        Queue.create(queue, exist_ok=True)
        task = Task.create(f"after-{queue}", command=[sys.executable, "-c", "print('ran')"]).enqueue(queue)
        assert task.wait(timeout=120).status == TaskStatus.COMPLETED, "".join(said)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_a_worker_started_before_its_redis_waits_then_runs_tasks(tmp_path, monkeypatch):
    server = RedisServer(tmp_path / "late", password="late-secret-pw")  # not started yet: nothing listens
    monkeypatch.setenv("TRAINYARD_REDIS_URL", server.url)
    reset_connections()
    try:
        _waits_then_runs(server, server.url, "late", "late-secret-pw", "connection refused")
    finally:
        server.cleanup()


def test_a_worker_behind_a_proxy_whose_redis_is_down_waits_too(tmp_path, monkeypatch):
    """A proxy (or load balancer) in front of a Redis that is restarting accepts the connection and
    closes it: the worker waits for it as for a refused one."""
    server = RedisServer(tmp_path / "behind", password="behind-pw")  # not started yet
    proxy = CuttableProxy(server.port)
    url = f"redis://:behind-pw@127.0.0.1:{proxy.port}/0"
    monkeypatch.setenv("TRAINYARD_REDIS_URL", url)
    reset_connections()
    try:
        _waits_then_runs(server, url, "behind", "behind-pw", "")
    finally:
        proxy.close()
        server.cleanup()


def test_no_wait_refuses_at_once_in_one_line(tmp_path):
    server = RedisServer(tmp_path / "never", password="never-pw")  # never started
    proc = _worker(server.url, "-q", "q", "--cpu-only", "--wait-redis", "0")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    one_error_line(subprocess.CompletedProcess([], 3, "", err), "cannot reach Redis at", "connection refused")
    assert "never-pw" not in err


def test_a_wrong_password_is_refused_at_once_even_when_waiting(redis_server):
    url = redis_server.url.replace("test-secret-pw", "wrong-pw")
    proc = _worker(url, "-q", "q", "--cpu-only", "--wait-redis", "600")
    _, err = proc.communicate(timeout=60)  # far less than the wait: a wrong password is not waited on
    assert proc.returncode == 3
    one_error_line(subprocess.CompletedProcess([], 3, "", err), "authentication failed")
    assert "wrong-pw" not in err
