"""Test fixtures: a real redis-server per test session, flushed before every test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainyard.connection import reset_connections

sys.path.insert(0, str(Path(__file__).parent))
from leftovers import LeftoverCheck  # noqa: E402
from redis_server import RedisServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LEFTOVERS = LeftoverCheck()


@pytest.fixture(scope="session", autouse=True)
def leftover_scope(tmp_path_factory):
    """Processes and containers that use this run's temporary folders are this run's (see leftovers.py)."""
    LEFTOVERS.basetemp = str(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis-session"), password="test-secret-pw").start()
    yield server
    server.cleanup()


@pytest.fixture(autouse=True)
def trainyard_env(request, redis_server, monkeypatch, tmp_path):
    """Every test points trainyard at the session's Redis (emptied) and a fresh home folder."""
    monkeypatch.setenv("TRAINYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRAINYARD_USER", "tester")
    if "embedded" in request.keywords:
        monkeypatch.delenv("TRAINYARD_REDIS_URL", raising=False)
    else:
        monkeypatch.setenv("TRAINYARD_REDIS_URL", redis_server.url)
        redis_server.client().flushall()
    reset_connections()
    yield
    reset_connections()


@pytest.fixture
def conn(redis_server):
    return redis_server.client()


@pytest.fixture
def run_cli():
    """Run the real `trainyard` command in a subprocess; returns CompletedProcess (text)."""

    def run(
        *args: str, check: bool = False, env: dict | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "trainyard", *args], capture_output=True, text=True, env=full_env, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"trainyard {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def docker_image():
    """A local busybox image; skips without a Docker engine, unless CI requires one."""
    from dockerimages import docker_engine, ensure_busybox_image

    engine = docker_engine()
    if engine is None:
        if os.environ.get("TRAINYARD_REQUIRE_DOCKER"):
            pytest.fail("TRAINYARD_REQUIRE_DOCKER is set but no Docker engine answers")
        pytest.skip("no Docker engine answers (start dockerd to run the docker-mode tests)")
    return ensure_busybox_image(engine)


def pytest_configure(config):
    config.addinivalue_line("markers", "embedded: uses the embedded Redis instead of the session server")
    LEFTOVERS.begin()  # before any test starts a process: they all inherit the run's token


def pytest_sessionfinish(session, exitstatus):
    """A test run leaves nothing behind: a leftover process, container or write under the real
    ~/.trainyard fails the run (and is ended, so the machine stays clean)."""
    problems = LEFTOVERS.finish()
    if not problems:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_sep("=", "left behind by the tests", red=True)
        for line in problems:
            reporter.write_line(line, red=True)
    else:
        print("left behind by the tests:", *problems, sep="\n", file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
