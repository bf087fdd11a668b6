"""The embedded Redis: zero set-up, shared by every process, persistent, stopped cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from trainyard.embedded import EmbeddedRedis

pytestmark = pytest.mark.embedded


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    yield path
    EmbeddedRedis(path / "redis").stop()  # never leave a server behind


def test_up_shares_one_server_persists_and_down_stops_it(run_cli, home):
    env = {"TRAINYARD_HOME": str(home)}
    child_env = {k: v for k, v in os.environ.items() if k != "TRAINYARD_REDIS_URL"} | env
    # two processes start it at the same moment: one server
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "trainyard", "up", "--print-url"], env=child_env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    urls = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(urls) == 1
    url = urls.pop()
    assert url.startswith("redis://:") and "@127.0.0.1:" in url  # loopback, with a password
    pid = EmbeddedRedis(home / "redis").pid()
    assert pid and psutil.pid_exists(pid)
    conf = (home / "redis" / "redis.conf").read_text()
    assert "appendonly yes" in conf and "bind 127.0.0.1" in conf
    assert oct((home / "redis" / "redis.conf").stat().st_mode & 0o777) == "0o600"

    up = run_cli("up", env=env, check=True).stdout
    assert "***" in up and url.split("@")[0].split(":")[-1] not in up  # the password is not printed

    task_id = run_cli("task", "create", "--name", "kept", "--", "true", env=env, check=True).stdout.strip()
    listed = json.loads(run_cli("task", "list", "--json", env=env, check=True).stdout)
    assert [t["id"] for t in listed] == [task_id]

    assert "stopped" in run_cli("down", env=env, check=True).stdout
    psutil.Process(pid).wait(timeout=30) if psutil.pid_exists(pid) else None
    assert not psutil.pid_exists(pid)
    status = run_cli("status", env=env)
    assert status.returncode == 3 and "not running" in status.stdout

    # any command that needs Redis starts it again, and the AOF brought the task back
    shown = json.loads(run_cli("task", "show", task_id, "--json", env=env, check=True).stdout)
    assert shown["name"] == "kept"
    assert run_cli("status", env=env, check=True).returncode == 0


def test_down_when_not_running(run_cli, home):
    proc = run_cli("down", env={"TRAINYARD_HOME": str(home)}, check=True)
    assert "was not running" in proc.stdout
