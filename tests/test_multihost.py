"""Many hosts for real: each "host" is a Linux network namespace with its own host name, its own
worker processes and its own home folder, joined to one real redis-server by its own virtual cable
(a veth pair, tests/netns.py). The hosts share only Redis and a stamp folder (a shared file system).

- GPU holds are per host: two hosts each run a task on their GPU 0 at the same time, while two
  workers on one host that share GPU 0 never hand it to two tasks at once.
- The reaper works across hosts: a host dies (every process in it SIGKILLed: worker, guard, task)
  and a worker on another host re-runs its task once the dead-after bound has passed.
- A host cut off from Redis (its cable pulled: packets dropped, not a proxy) fences its task; the
  task is re-run on another host, never beside the fenced attempt; when the cable is back the cut
  worker rejoins and takes work again.

The GPUs are a stand-in (worker/standin_nvml.py): this machine has none. Each task process proves
exclusivity itself with a non-blocking ``flock`` (per host and GPU, or per task) and writes
start/end stamps, as the chaos suite's tasks do. Needs root and iproute2; skipped otherwise,
unless TRAINYARD_REQUIRE_NETNS is set (then it fails).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from netns import Network, unavailable
from redis_server import RedisServer
from workerproc import WorkerProcess, wait_for_log, wait_status, wait_worker_registered

from trainyard import Queue, Task, TaskStatus
from trainyard.connection import reset_connections
from trainyard.queues import keys

WHY_NOT = unavailable()
if WHY_NOT and os.environ.get("TRAINYARD_REQUIRE_NETNS"):
    pytest.fail(f"TRAINYARD_REQUIRE_NETNS is set but {WHY_NOT}", pytrace=False)
pytestmark = [pytest.mark.skipif(WHY_NOT is not None, reason=f"multi-host test: {WHY_NOT}"), pytest.mark.timeout(300)]

STANDIN_GPU = {
    "TRAINYARD_NVML": "standin",
    "TRAINYARD_STANDIN_GPUS": '[{"name": "Stand-in 0", "memory_total_mb": 16384}]',
}

# argv[1]: JSON {"folder", "lock" (a name: {host}, {gpu}, {task} filled in), "pause" (seconds per
# attempt, "*" for any other), "go" (a file to wait for before pausing, or null)}
TASK_CODE = r"""
import fcntl, json, os, signal, socket, sys, time
spec = json.loads(sys.argv[1])
tid = os.environ["TRAINYARD_TASK_ID"]
attempt = json.load(open(os.path.join(os.environ["TRAINYARD_RUN_DIR"], "task.json")))["attempt"]
host, gpu = socket.gethostname(), os.environ.get("CUDA_VISIBLE_DEVICES", "")
lock_name = spec["lock"].format(host=host, gpu=gpu, task=tid)
stamps = os.open(os.path.join(spec["folder"], "stamps.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
def stamp(kind):
    line = {"kind": kind, "task": tid, "attempt": attempt, "host": host, "gpu": gpu, "t": time.time()}
    os.write(stamps, (json.dumps({**line, "lock": lock_name}) + "\n").encode())
def on_term(*_):  # the fence (or a stop) ends the attempt
    stamp("term")
    os._exit(143)
signal.signal(signal.SIGTERM, on_term)
lock = os.open(os.path.join(spec["folder"], lock_name), os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    stamp("twin")  # another process holds it: two at once
    print("TWIN", lock_name, flush=True)
    sys.exit(3)
stamp("start")
print("UP", attempt, host, gpu, flush=True)
if spec.get("go"):
    for _ in range(2400):  # the test says go once it has seen every task of the round up (at most 2 min)
        if os.path.exists(spec["go"]):
            break
        time.sleep(0.05)
    else:
        sys.exit(4)
time.sleep(spec["pause"].get(str(attempt), spec["pause"].get("*", 0)))
stamp("end")
"""


class Cluster:
    """Hosts on one network, one redis-server listening on every host's cable, and the workers."""

    def __init__(self, tmp_path: Path, hostnames: list[str]):
        self.tmp = tmp_path
        self.stamps = tmp_path / "shared"
        self.stamps.mkdir()
        self.net = Network(hostnames).open()
        self.redis = RedisServer(tmp_path / "redis", password="multihost-pw", bind=self.net.gateways())
        self.workers: list[WorkerProcess] = []

    def host(self, name: str) -> str:
        """The host name its workers report."""
        return self.net.hosts[name].hostname

    def worker(self, host: str, name: str, *args: str, env: dict | None = None) -> WorkerProcess:
        """A worker on ``host`` (its namespace, its host name, its own home folder), reaching Redis
        through the host's cable."""
        where = self.net.hosts[host]
        full_env = {
            "TRAINYARD_REDIS_URL": self.redis.url_at(where.gateway),
            "TRAINYARD_HOME": str(self.tmp / f"home-{host}"),
            **(env or {}),
        }
        worker = WorkerProcess(
            *args, "--name", name, "--grace", "2", env=full_env, host=where.hostname, netns=where.netns
        )
        self.workers.append(worker)
        return worker

    def task(self, name: str, queue: str, lock: str, pause: dict, go: bool = False, **options) -> Task:
        spec = {"folder": str(self.stamps), "lock": lock, "pause": pause, "go": str(self.go) if go else None}
        return Task.create(name, command=[sys.executable, "-c", TASK_CODE, json.dumps(spec)], **options).enqueue(queue)

    @property
    def go(self) -> Path:
        return self.stamps / "go"

    def stamps_of(self, task: Task | None = None) -> list[dict]:
        path = self.stamps / "stamps.log"
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [s for s in lines if task is None or s["task"] == task.id]

    def close(self) -> None:
        for name in self.net.hosts:  # a worker behind a pulled cable could not stop cleanly
            self.net.restore(name)
        for worker in self.workers:
            worker.stop()
        self.net.close()
        self.redis.cleanup()


@pytest.fixture
def cluster(trainyard_env, monkeypatch, tmp_path):
    """Start a cluster of the named hosts; the test process talks to the same Redis (loopback)."""
    made: list[Cluster] = []

    def start(*hostnames: str) -> Cluster:
        made.append(Cluster(tmp_path, list(hostnames)))
        made[-1].redis.start()
        monkeypatch.setenv("TRAINYARD_REDIS_URL", made[-1].redis.url)
        reset_connections()
        return made[-1]

    yield start
    for each in made:
        net = each.net
        try:
            each.close()
        finally:
            assert net.leftovers() == []  # no namespace, no veth left behind
    reset_connections()


def _no_twins(stamps: list[dict]) -> None:
    twins = [s for s in stamps if s["kind"] == "twin"]
    assert not twins, f"two task processes held one lock at once: {twins}"


def test_gpu_holds_are_per_host(cluster):
    """Hosts a and b each run a task on their GPU 0 at once; a's two workers share its GPU 0 and
    never run two tasks on it at once."""
    c = cluster("a", "b")
    conn = c.redis.client()
    for queue in ("host-a", "host-b", "only-a1", "only-a2"):
        Queue.create(queue)
    workers = [
        c.worker("a", "a1", "--gpus", "0", "-q", "host-a", "-q", "only-a1", env=STANDIN_GPU),
        c.worker("a", "a2", "--gpus", "0", "-q", "host-a", "-q", "only-a2", env=STANDIN_GPU),
        c.worker("b", "b1", "--gpus", "0", "-q", "host-b", env=STANDIN_GPU),
    ]
    for name in ("a1", "a2", "b1"):
        wait_worker_registered(conn, name, timeout=90)

    # Round 1: one task per host; both are up (each holding its host's GPU 0) before either may end.
    lock = "gpu-{host}-{gpu}"
    pair = [c.task(f"pair-{h}", f"host-{h}", lock, {"*": 0}, go=True, gpus=1) for h in ("a", "b")]
    for task in pair:
        wait_for_log(conn, task.id, "UP 1")
    for task, host in zip(pair, ("a", "b")):
        holds = conn.hgetall(keys.gpu_holds(c.host(host), 0))
        assert list(holds) == [task.id.encode()], (host, holds)  # no cross-host refusal, no other task
    c.go.touch()
    records = [wait_status(t, TaskStatus.COMPLETED, TaskStatus.FAILED).data for t in pair]
    assert [(r.status, r.runtime.host, r.runtime.gpus) for r in records] == [
        (TaskStatus.COMPLETED, c.host("a"), ["0"]),
        (TaskStatus.COMPLETED, c.host("b"), ["0"]),
    ]

    # Round 2: a's two workers each get a task of their own queue and four of a shared one, all
    # needing GPU 0 of host a, all enqueued at once; b runs beside them.
    short = {"*": 0.3}
    tasks = [
        c.task("x1", "only-a1", lock, short, gpus=1),
        c.task("x2", "only-a2", lock, short, gpus=1),
        *(c.task(f"shared-a{i}", "host-a", lock, short, gpus=1) for i in range(4)),
        *(c.task(f"b{i}", "host-b", lock, short, gpus=1) for i in range(2)),
    ]
    records = [wait_status(t, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=120).data for t in tasks]
    assert all(r.status == TaskStatus.COMPLETED for r in records), [(r.name, r.runtime.error) for r in records]
    _no_twins(c.stamps_of())
    by_name = {r.name: r for r in records}
    assert (by_name["x1"].runtime.worker, by_name["x2"].runtime.worker) == ("a1", "a2")  # both shared a's GPU 0
    for r in records:
        assert r.runtime.gpus == ["0"]
        assert r.runtime.host == c.host("b" if r.name.startswith("b") else "a")
    on_a = [r for r in records if r.runtime.host == c.host("a")]
    for i, one in enumerate(on_a):
        for other in on_a[i + 1 :]:
            assert one.ended <= other.started or other.ended <= one.started, (one.name, other.name)
    for worker in workers:
        assert worker.proc.poll() is None, worker.output()


def test_a_dead_hosts_task_is_rerun_on_another_host(cluster):
    """Host a dies with its task running; b's worker reaps it after the dead-after bound and runs it."""
    c = cluster("a", "b")
    conn = c.redis.client()
    Queue.create("work")
    doomed = c.worker("a", "wa", "--cpu-only", "-q", "work")
    wait_worker_registered(conn, "wa", timeout=90)
    task = c.task("long", "work", "task-{task}", {"1": 600, "*": 0.2}, retries=1)
    wait_for_log(conn, task.id, "UP 1")
    survivor = c.worker("b", "wb", "--cpu-only", "-q", "work")  # idle: the queue is empty now
    wait_worker_registered(conn, "wb", timeout=90)

    assert c.net.kill_host("a") >= 3  # the worker, its guard, the task
    doomed.wait()
    assert c.net.pids("a") == []

    record = wait_status(task, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=120).data
    assert record.status == TaskStatus.COMPLETED, record.runtime.error
    assert [(a.attempt, a.worker, a.host, a.outcome) for a in record.runtime.attempts] == [
        (1, "wa", c.host("a"), "lost"),
        (2, "wb", c.host("b"), "completed"),
    ]
    assert f"worker lost: wa on {c.host('a')} stopped reporting" in (record.runtime.attempts[0].error or "")
    stamps = c.stamps_of(task)
    _no_twins(stamps)
    assert [(s["kind"], s["attempt"], s["host"]) for s in stamps] == [
        ("start", 1, c.host("a")),  # killed with its host: no end
        ("start", 2, c.host("b")),
        ("end", 2, c.host("b")),
    ]
    assert survivor.proc.poll() is None, survivor.output()


def test_a_host_cut_off_from_redis_fences_its_task_and_rejoins(cluster):
    """Host a's cable is pulled while its task runs: its worker ends the task (fence), b re-runs it
    after the reaper declared a's worker dead, the two attempts never overlap; once the cable is
    back, a's worker reports again and takes new work."""
    c = cluster("a", "b")
    conn = c.redis.client()
    Queue.create("work")
    Queue.create("only-a")
    cut = c.worker("a", "wa", "--cpu-only", "-q", "work", "-q", "only-a")
    wait_worker_registered(conn, "wa", timeout=90)
    task = c.task("long", "work", "task-{task}", {"1": 600, "*": 0.2}, retries=1)
    wait_for_log(conn, task.id, "UP 1")
    c.worker("b", "wb", "--cpu-only", "-q", "work")  # idle: the queue is empty now
    wait_worker_registered(conn, "wb", timeout=90)

    c.net.cut("a")
    record = wait_status(task, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=120).data
    assert record.status == TaskStatus.COMPLETED, record.runtime.error
    first, second = record.runtime.attempts
    assert (first.worker, first.host, first.outcome) == ("wa", c.host("a"), "lost")
    assert (second.worker, second.host, second.outcome) == ("wb", c.host("b"), "completed")
    stamps = c.stamps_of(task)
    _no_twins(stamps)
    assert [(s["kind"], s["attempt"]) for s in stamps] == [("start", 1), ("term", 1), ("start", 2), ("end", 2)]
    assert first.ended <= second.started

    assert not conn.exists(keys.worker("wa"))  # cut off, it looked dead: its entry expired

    c.net.restore("a")
    wait_worker_registered(conn, "wa", timeout=120)  # its entry expired while it was cut off; heartbeats are back
    again = c.task("after", "only-a", "task-{task}", {"*": 0})
    done = wait_status(again, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=120).data
    assert (done.status, done.runtime.worker, done.runtime.host) == (TaskStatus.COMPLETED, "wa", c.host("a"))
    assert cut.proc.poll() is None
    output = cut.output()
    assert "ending it so it cannot run twice" in output
    assert "Traceback" not in output
    # the fenced attempt's late report changed nothing: the task's record is as it was
    assert [(a.attempt, a.outcome) for a in Task.get(task.id).data.runtime.attempts] == [(1, "lost"), (2, "completed")]
