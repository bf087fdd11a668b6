"""Redis behind Sentinel, for real (issue 17): a primary, a replica and three ``redis-sentinel``
processes; the primary is killed mid-storm and nothing is lost: every task ends completed, none
runs twice at once, and workers, CLI and clients follow the failover by themselves."""

from __future__ import annotations

import os
import shutil

import pytest
import redis
from sentinel_cluster import PASSWORD, SERVICE, Cluster
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


def test_a_primary_killed_mid_storm_loses_nothing(cluster, tmp_path, monkeypatch, run_cli):
    url = cluster.url()
    monkeypatch.setenv("TRAINYARD_REDIS_URL", url)
    monkeypatch.setenv("TRAINYARD_REDIS_REPLICAS", "1")  # acknowledged only once the replica has it
    reset_connections()
    log = tmp_path / "runs.log"
    Queue.create("storm")
    body = (
        "import os, time\n"
        f"f = os.open({str(log)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
        "t = os.environ['TRAINYARD_TASK_ID']\n"
        "os.write(f, f'start {t}\\n'.encode()); time.sleep(0.3); os.write(f, f'end {t}\\n'.encode())\n"
    )
    tasks = create_many(
        [{"name": f"s{i}", "command": ["python", "-c", body], "retries": 3} for i in range(30)], queue="storm"
    )
    replica = redis.Redis(port=cluster.replica, password=PASSWORD)
    assert replica.llen("rq:queue:storm") == len(tasks)  # create_many returned: the replica has them all
    env = {"TRAINYARD_REDIS_URL": url}  # after the failover no replica is left to wait for
    workers = [WorkerProcess("-q", "storm", "--cpu-only", env=env, fast=False) for _ in range(3)]
    try:
        _until(lambda: log.exists() and log.read_text().count("end ") >= 6, "the storm to be under way", 120)
        cluster.kill_primary()
        monkeypatch.delenv("TRAINYARD_REDIS_REPLICAS")
        sentinel = redis.Redis(port=cluster.sentinels[0])
        _until(lambda: sentinel.sentinel_get_master_addr_by_name(SERVICE)[1] == cluster.replica, "the failover", 60)
        final = [Task.get(t.id).wait(timeout=240) for t in tasks]
        assert [t.status for t in final] == [TaskStatus.COMPLETED] * len(tasks)
        listed = run_cli("task", "list", "--status", "completed", env={"TRAINYARD_REDIS_URL": url})
        assert listed.returncode == 0, listed.stderr  # the CLI finds the new primary by itself
    finally:
        for worker in workers:
            worker.stop()
    running: dict[str, int] = {}
    for line in log.read_text().splitlines():
        kind, task_id = line.split()
        running[task_id] = running.get(task_id, 0) + (1 if kind == "start" else -1)
        assert running[task_id] <= 1, f"task {task_id} ran twice at once"
    assert {t.id for t in tasks} <= {line.split()[1] for line in log.read_text().splitlines() if line.startswith("end")}
    assert os.environ["TRAINYARD_REDIS_URL"] == url
