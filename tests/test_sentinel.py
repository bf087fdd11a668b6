"""Redis behind Sentinel, for real (issue 17): a primary, a replica and three ``redis-sentinel``
processes; the primary is killed mid-storm and nothing is lost: every task ends completed, none
runs twice at once, and workers, CLI and clients follow the failover by themselves."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from sentinel_cluster import Cluster
from sentinel_cluster import until as _until
from workerproc import WorkerProcess

from trainyard import Queue, Task, TaskStatus
from trainyard.connection import reset_connections
from trainyard.queues.backend import sentinel as sentinel_urls
from trainyard.queues.task import create_many

if shutil.which("redis-sentinel") is None and os.environ.get("TRAINYARD_REQUIRE_SENTINEL"):
    pytest.fail("TRAINYARD_REQUIRE_SENTINEL is set but redis-sentinel is not installed", pytrace=False)
pytestmark = pytest.mark.skipif(shutil.which("redis-sentinel") is None, reason="needs Debian's redis-sentinel")


@pytest.fixture
def cluster(tmp_path):
    found = Cluster(tmp_path / "sentinel").start()
    try:
        yield found
    finally:
        found.stop()


def test_a_sentinel_url_is_parsed_and_a_bad_one_refused_in_one_line():
    target = sentinel_urls.parse("redis+sentinel://u:p%40w@h1:26379,h2:26380/mymaster/3?sentinel_password=x")
    assert target.sentinels == [("h1", 26379), ("h2", 26380)]
    assert (target.service, target.db, target.username, target.password) == ("mymaster", 3, "u", "p@w")
    assert target.sentinel_options == {"password": "x"}
    assert sentinel_urls.parse("rediss+sentinel://h1:26379/m").tls
    for bad in ("redis+sentinel://h1:26379/", "redis+sentinel://h1:port/m", "redis+sentinel://h1:1/m/x"):
        with pytest.raises(ValueError):
            sentinel_urls.parse(bad)


def test_a_bad_sentinel_url_is_one_line_from_the_cli(run_cli):
    result = run_cli("queue", "list", env={"TRAINYARD_REDIS_URL": "redis+sentinel://:secret@h1:port/m"})
    assert result.returncode != 0
    assert "sentinel" in result.stderr and "Traceback" not in result.stderr and "secret" not in result.stderr


STORM_TASKS = 240
STORM_WORKERS = 4
# Each task process notices a concurrent twin itself (as in tests/chaos/test_chaos.py): a
# non-blocking flock on a file named after its task id (the kernel drops it when the process dies),
# then start/end stamps appended with O_APPEND; a twin that finds the lock taken writes DUP.
STAMP_CODE = """
import fcntl, os, sys, time
tid, attempt = os.environ["TRAINYARD_TASK_ID"], os.environ["TRAINYARD_ATTEMPT"]
folder, pause = sys.argv[1], float(sys.argv[2])
stamps = os.open(os.path.join(folder, "stamps.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
lock = os.open(os.path.join(folder, "locks", tid), os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    dup = ""
except BlockingIOError:
    dup = " DUP"
os.write(stamps, f"start {tid} {attempt}{dup}\\n".encode())
time.sleep(pause)
os.write(stamps, f"end {tid} {attempt}\\n".encode())
"""


def _stamps(folder) -> list[list[str]]:
    path = folder / "stamps.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _ended(folder) -> int:
    return sum(s[0] == "end" for s in _stamps(folder))


def test_a_primary_killed_mid_storm_loses_nothing(cluster, tmp_path, monkeypatch, run_cli):
    """A few hundred short tasks on several workers; the primary is SIGKILLed mid-storm, the
    sentinels promote the replica, and the old primary comes back (empty) as the new replica, as
    an operator or the sentinels would bring it back. Then: 0 lost (every task completed, each
    with an end stamp), 0 concurrent duplicates, every task final."""
    url = cluster.url()
    monkeypatch.setenv("TRAINYARD_REDIS_URL", url)
    monkeypatch.setenv("TRAINYARD_REDIS_REPLICAS", "1")  # acknowledged only once the replica has it (workers too)
    reset_connections()
    folder = tmp_path / "storm"
    (folder / "locks").mkdir(parents=True)
    Queue.create("storm")
    specs = [
        {
            "name": f"s{i}",
            "command": [sys.executable, "-c", STAMP_CODE, str(folder), f"{(i % 5) * 0.02:.2f}"],
            "retries": 3,
        }
        for i in range(STORM_TASKS)
    ]
    tasks = create_many(specs, queue="storm")
    replica = cluster.client("replica")
    assert replica.llen("rq:queue:storm") == len(tasks)  # create_many returned: the replica has them all
    env = {"TRAINYARD_REDIS_URL": url}
    workers = [WorkerProcess("-q", "storm", "--cpu-only", env=env, fast=False) for _ in range(STORM_WORKERS)]
    try:
        _until(
            lambda: sum(s[0] == "end" for s in _stamps(folder)) >= STORM_TASKS // 4, "the storm to be under way", 180
        )
        cluster.kill_primary()
        ended_before = sum(s[0] == "end" for s in _stamps(folder))
        _until(lambda: cluster.promoted() == "replica", "the failover", 180)  # elections retry under load
        cluster.replicate("primary", of="replica")  # the dead primary returns as the new primary's replica
        final = [Task.get(t.id).wait(timeout=300) for t in tasks]
        listed = run_cli("task", "list", "--status", "completed", "--limit", "1", env={"TRAINYARD_REDIS_URL": url})
        assert listed.returncode == 0, listed.stderr  # the CLI finds the new primary by itself
    finally:
        for worker in workers:
            worker.stop()
    assert ended_before < STORM_TASKS  # the primary died mid-storm, not after it
    unfinished = [(t.id, t.status.value, t.runtime.error) for t in final if t.status != TaskStatus.COMPLETED]
    assert unfinished == []  # every task final, none lost
    stamps = _stamps(folder)
    assert [s for s in stamps if "DUP" in s] == []  # no task ever ran beside a twin of itself
    running: dict[str, int] = {}
    for kind, task_id, *_ in stamps:
        running[task_id] = running.get(task_id, 0) + (1 if kind == "start" else -1)
        assert running[task_id] <= 1, f"task {task_id} ran twice at once"
    assert {t.id for t in tasks} <= {s[1] for s in stamps if s[0] == "end"}
    assert os.environ["TRAINYARD_REDIS_URL"] == url
    reruns = sum(s[0] == "start" for s in stamps) - len(tasks)
    print(f"storm: {len(tasks)} tasks, {ended_before} ended before the kill, {reruns} ran again")  # -s shows it
