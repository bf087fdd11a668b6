"""The chaos suite: many short tasks on 4 real workers while workers are SIGKILLed and restarted,
one worker's link to Redis is cut, Redis itself restarts (AOF on), and tasks are aborted at random;
a pipeline runs through the same storm. At the end nothing is lost, nothing ran twice at the same
time, every attempt is recorded, RQ jobs agree with task records, and nothing is left behind.

The default run is small (CI). The full run: ``TRAINYARD_CHAOS=full python -m pytest tests/chaos -s``
(its figures go to README's reliability section). ``TRAINYARD_CHAOS_SEED`` replays a storm.

Each task process detects a concurrent twin itself: it takes a non-blocking ``flock`` on a file
named after its task id (the kernel drops the lock when the process dies, however it dies), and
appends start/end stamps with O_APPEND; a twin that finds the lock taken writes ``DUP``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import redis
from proxy import CuttableProxy
from redis_server import RedisServer
from rq.job import Job
from rq.serializers import JSONSerializer
from workerproc import FAST, WorkerProcess

from trainyard import Pipeline, Queue, Task, TaskStatus
from trainyard.connection import reset_connections
from trainyard.controller import run_store
from trainyard.controller.pipeline import resume
from trainyard.queues import keys
from trainyard.queues.record import FINAL_STATUSES, TaskRecord
from trainyard.queues.task import create_many

QUEUES = ("q0", "q1", "q2")
TASK_CODE = """
import fcntl, json, os, signal, sys, time
tid, run = os.environ["TRAINYARD_TASK_ID"], os.environ["TRAINYARD_RUN_DIR"]
attempt = json.load(open(os.path.join(run, "task.json")))["attempt"]
folder, pause, code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
stamps = os.open(os.path.join(folder, "stamps.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
def on_term(*_):  # when SIGTERM arrived: abort -> SIGTERM is timed from these stamps
    os.write(stamps, f"term {tid} {attempt} {os.getpid()} {time.time():.6f}\\n".encode())
    os._exit(143)
signal.signal(signal.SIGTERM, on_term)
lock = os.open(os.path.join(folder, "locks", tid), os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    dup = ""
except BlockingIOError:
    dup = " DUP"
os.write(stamps, f"start {tid} {attempt} {os.getpid()} {time.time():.6f}{dup}\\n".encode())
time.sleep(pause)
os.write(stamps, f"end {tid} {attempt} {os.getpid()} {time.time():.6f}\\n".encode())
sys.exit(code)
"""

STEP = """
import time
from trainyard import current_task
task = current_task()
value = task.get_parameter("Args/value")
time.sleep(1.0)  # long enough for the storm to reach the pipeline
task.set_output("value", value * 2)
print("step doubled", value, flush=True)
"""


@dataclass
class Size:
    tasks: int
    kills: int
    restarts: int
    cuts: int
    aborts: int
    docker_tasks: int
    outages: int  # Redis stopped for longer than half the dead-after bound; claims arrive right after
    lonely: int  # a worker alone on its host, running a docker task and a setsid-detached one, is killed
    slots: int = 2


SIZES = {
    "ci": Size(tasks=500, kills=6, restarts=2, cuts=1, aborts=20, docker_tasks=3, outages=1, lonely=1),
    "full": Size(tasks=3000, kills=16, restarts=4, cuts=3, aborts=150, docker_tasks=12, outages=3, lonely=3),
}


@dataclass
class Figures:
    tasks: int = 0
    workers: int = 4
    kills: int = 0
    restarts: int = 0
    cuts: int = 0
    aborts: int = 0
    outcomes: dict = field(default_factory=dict)
    starts: int = 0
    rerun_tasks: int = 0
    attempts_max: int = 0
    lost: int = 0
    concurrent_duplicates: int = 0
    fenced: int = 0
    reaped: int = 0
    rq_mismatches: int = 0
    leaked_processes: int = 0
    leaked_containers: int = 0
    outages: int = 0
    lonely_kills: int = 0
    lost_within_1s: int = 0  # attempts ended as lost within 1 s of their start (a fence right after Redis returned)
    overlapping_attempts: int = 0  # two attempts of a task alive at once, on any hosts (flock twins, containers)
    abort_to_sigterm_ms: dict = field(default_factory=dict)  # abort request -> SIGTERM in the task: n, median, max
    pipeline: str = ""
    seconds: float = 0.0


class Fleet:
    """The 4 workers (the last one talks to Redis through a proxy that can be cut)."""

    def __init__(self, server: RedisServer, proxy: CuttableProxy, slots: int, run_tag: str):
        self.server, self.proxy, self.slots, self.tag = server, proxy, slots, run_tag
        self.workers: list[WorkerProcess | None] = [None] * 4
        self.generation = [0] * 4
        self.all: list[WorkerProcess] = []
        self.lonely: list[WorkerProcess] = []

    def url(self, index: int) -> str:
        if index == 3:
            return f"redis://:{self.server.password}@127.0.0.1:{self.proxy.port}/0"
        return self.server.url

    def start(self, index: int) -> None:
        # every other restart reuses the name, as a systemd unit with a fixed --name would
        self.generation[index] += 1
        name = f"{self.tag}-w{index}" + ("" if self.generation[index] % 2 else f"-g{self.generation[index]}")
        # the worker behind the proxy also serves "slow" first, so it is mid-task when its link is cut
        args = [a for q in (("slow",) if index == 3 else ()) + (*QUEUES, "services") for a in ("-q", q)]
        worker = WorkerProcess(
            *args,
            "--services-mode",
            str(self.slots),
            "--name",
            name,
            "--grace",
            "1",
            env={"TRAINYARD_REDIS_URL": self.url(index)},
        )
        self.workers[index] = worker
        self.all.append(worker)

    def name(self, index: int) -> str:
        worker = self.workers[index]
        return worker.args[worker.args.index("--name") + 1] if worker else ""

    def index_of(self, name: str | None, default: int) -> int:
        return next((i for i in range(4) if name and self.name(i) == name), default)

    def kill(self, index: int) -> None:
        worker = self.workers[index]
        if worker is not None:
            worker.proc.kill()  # SIGKILL: no clean-up of any kind
            worker.proc.wait(timeout=30)

    def start_lonely(self, queue: str, number: int) -> WorkerProcess:
        """A worker alone on its own host (a UTS namespace named after it) serving only ``queue``."""
        worker = WorkerProcess(
            "-q", queue, "--services-mode", "2", "--name", f"{self.tag}-lonely{number}", "--grace", "1",
            env={"TRAINYARD_REDIS_URL": self.server.url},
            host=f"{self.tag}-host{number}",
        )  # fmt: skip
        self.lonely.append(worker)
        self.all.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in [*self.workers, *self.lonely]:
            if worker is not None and worker.proc.poll() is None:
                worker.stop()


# the full size runs ~2.5 min here; give it room (and the 600 s deadline below a chance to report)
pytestmark = pytest.mark.timeout(1500 if os.environ.get("TRAINYARD_CHAOS") == "full" else 300)


def _size() -> Size:
    return SIZES["full" if os.environ.get("TRAINYARD_CHAOS") == "full" else "ci"]


def _retrying(fn, *args, **kwargs):
    """Our own calls ride out a Redis restart."""
    for _ in range(100):
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, ConnectionError):
            time.sleep(0.2)
    return fn(*args, **kwargs)


def _busy(conn: redis.Redis, worker: WorkerProcess | None, task_id: str, bound_s: float = 120) -> str | None:
    """Wait (on events) until the worker runs ``task_id``; None when it does, else what its registry
    entry says (a worker that stopped taking work). The bound is in time, not in events: a busy
    fleet's events would use up a count before a just-restarted worker has registered."""
    name = worker.args[worker.args.index("--name") + 1] if worker else ""
    raw = None
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            raw = conn.get(keys.worker(name))
            if raw and task_id in json.loads(raw).get("current", []):
                return None
            conn.xread({keys.EVENTS: "$"}, block=200, count=1)
    return f"{name}: {raw!r}"[:600]


def _lost(task: Task) -> bool:
    attempts = task.data.runtime.attempts
    return task.status == TaskStatus.FAILED and bool(attempts) and attempts[-1].outcome == "lost"


def _terminal_count(conn: redis.Redis) -> int:
    return sum(conn.zcard(keys.status_index(s.value)) for s in FINAL_STATUSES)


def _wait_terminal(conn: redis.Redis, ids: list[str], timeout: float) -> list[TaskRecord]:
    """Block on the event stream until every task is final (the deadline only bounds a hang)."""
    deadline = time.monotonic() + timeout
    cursor = "0-0"
    while True:
        # read every record at most every 2 s: parsing thousands on each event batch starves the workers
        settle = time.monotonic() + 2
        while time.monotonic() < settle:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                reply = conn.xread({keys.EVENTS: cursor}, block=1000, count=5000)
                for _, entries in reply or []:
                    cursor = entries[-1][0]
        raw = _retrying(conn.mget, [keys.task(t) for t in ids])
        records = [TaskRecord.from_json(r) for r in raw if r is not None]
        pending = [r for r in records if r.status not in FINAL_STATUSES]
        if len(records) == len(ids) and not pending:
            return records
        if time.monotonic() > deadline:
            sample = [(r.id, r.status.value, r.runtime.worker) for r in pending[:10]]
            for r in pending[:5]:  # where each straggler stands: its attempts, its queue list, its claim
                queue = r.execution.queue or ""
                listed = conn.lpos(keys.rq_queue(queue), r.id) if queue else None
                tried = [(a.attempt, a.worker, a.outcome, a.error) for a in r.runtime.attempts]
                claim = conn.hget(keys.CLAIMS, r.id)
                print(f"straggler {r.id}: {r.status.value} on {queue!r} (list position {listed}), "
                      f"message {r.status_message!r}, claim {claim!r}, attempts {tried}")  # fmt: skip
            raise AssertionError(f"{len(pending)} tasks not final, {len(ids) - len(records)} missing: {sample}")


def _stamps(folder: Path) -> tuple[collections.Counter, int, dict[tuple[str, int], int]]:
    starts: collections.Counter = collections.Counter()
    dups = 0
    per_attempt: dict[tuple[str, int], int] = collections.Counter()
    path = folder / "stamps.log"
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if parts[0] == "start":
            starts[parts[1]] += 1
            per_attempt[(parts[1], int(parts[2]))] += 1
            dups += parts[-1] == "DUP"
    return starts, dups, per_attempt


def _leaked_processes(ids: set[str], folder: Path) -> list[str]:
    leaked = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(folder) in cmdline or proc.environ().get("TRAINYARD_TASK_ID") in ids:
                leaked.append(f"{proc.pid}: {cmdline[:120]}")
        except (psutil.Error, OSError):
            continue
    return leaked


def _leaked_containers(ids: set[str]) -> list[str]:
    try:
        import docker

        engine = docker.from_env(timeout=10)
        engine.ping()
    except Exception:
        return []
    return [c.name for c in engine.containers.list(all=True) if c.labels.get("trainyard.task") in ids]


def _rq_agrees(conn: redis.Redis, record: TaskRecord) -> bool:
    expected = {"completed": "finished", "failed": "failed", "aborted": "stopped"}[record.status.value]
    job = Job.fetch(record.id, connection=conn, serializer=JSONSerializer)
    return job.get_status(refresh=True).value == expected and job.args == [record.id]


def _can_be_another_host() -> bool:
    """Can a worker get a host name of its own here (a UTS namespace: root, or a user namespace)?"""
    probe = subprocess.run(["unshare", "--uts", "hostname", "probe"], capture_output=True, check=False)
    if probe.returncode:
        print("chaos: no UTS namespaces here; the lone-worker rounds are left out")
    return probe.returncode == 0


def _lonely_round(
    conn: redis.Redis, fleet: Fleet, figures: Figures, folder: Path, image: str | None, stalls: list[str]
) -> list[str]:
    """A worker alone on its host runs a task whose child detached with ``setsid`` (and a docker
    task); it is SIGKILLed and a worker on another host takes the tasks over once they are reaped.
    Nothing on the first host but the dead worker's guard can end what it left: a first attempt
    still alive when the second starts shows as a flock twin or as overlapping containers."""
    number = len(fleet.lonely) + 1
    queue = f"lonely{number}"
    _retrying(Queue.create, queue)
    worker = fleet.start_lonely(queue, number)
    detach = 'setsid "$1" -S -c "$2" "$3" "$4" "$5" & wait'  # the task's child leaves its group and session
    command = ["bash", "-c", detach, "detach", sys.executable, TASK_CODE, str(folder), "8", "0"]
    spec = {"name": f"chaos-lonely-{number}", "project": "chaos", "retries": 2, "command": command}
    ids = [t.id for t in _retrying(create_many, [spec], queue=queue)]
    if image:
        boxed = Task.create(f"chaos-lonely-docker-{number}", "chaos", command=["sleep", "8"], mode="docker",
                            docker_image=image, retries=2)  # fmt: skip
        _retrying(boxed.enqueue, queue)
        ids.append(boxed.id)
    for task_id in ids:
        stall = _busy(conn, worker, task_id)
        if stall:
            stalls.append(stall)
    worker.proc.kill()  # SIGKILL; no other worker on its host
    worker.proc.wait(timeout=30)
    figures.lonely_kills += 1
    fleet.start_lonely(queue, number + 100)  # another host: it runs the tasks once they are reaped
    return ids


def _term_stamps(folder: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = collections.defaultdict(list)
    path = folder / "stamps.log"
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if parts[0] == "term":
            found[parts[1]].append(float(parts[4]))
    return found


def _abort_delays(asked: dict[str, float], terms: dict[str, list[float]]) -> dict:
    """Abort request -> SIGTERM in the task, for the aborts that found their task running."""
    delays = sorted(
        min(t for t in terms[tid] if t >= when) - when
        for tid, when in asked.items()
        if any(t >= when for t in terms[tid])
    )
    if not delays:
        return {"n": 0}
    return {"n": len(delays), "median": round(statistics.median(delays) * 1000, 1), "max": round(delays[-1] * 1000, 1)}


def _docker_overlaps(ids: set[str], since: float) -> int:
    """Pairs of containers of one task alive at the same time (from the engine's start/die events)."""
    try:
        import docker

        engine = docker.from_env(timeout=10)
        engine.ping()
    except Exception:
        return 0
    spans: dict[tuple[str, str], list[float]] = {}
    events = engine.events(
        since=int(since) - 1, until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "label": "trainyard.task", "event": ["start", "die"]},
    )  # fmt: skip
    for event in events:
        attrs = event.get("Actor", {}).get("Attributes", {})
        task, name, at = attrs.get("trainyard.task"), attrs.get("name", ""), event["timeNano"] / 1e9
        if task not in ids:
            continue
        if event.get("Action") == "start":
            spans[(task, name)] = [at, float("inf")]
        elif (task, name) in spans:
            spans[(task, name)][1] = at
    overlaps = 0
    for task in {t for t, _ in spans}:
        intervals = sorted(v for (t, _), v in spans.items() if t == task)
        overlaps += sum(1 for a, b in zip(intervals, intervals[1:]) if b[0] < a[1])
    return overlaps


def _pipeline(tmp: Path) -> Pipeline:
    script = tmp / "step.py"
    script.write_text(STEP)
    template = Task.create("double", "chaos-tpl", script=script, detect_repository=False, parameters={"Args/value": 1})
    pipe = Pipeline("storm", project="chaos", default_queue="q0")
    pipe.add_step("a", base_task=template, parameter_override={"Args/value": 3}, retries=5)
    pipe.add_step("b", base_task=template, parameter_override={"Args/value": "${a.outputs.value}"}, retries=5)
    pipe.add_step("c", base_task=template, parameter_override={"Args/value": "${b.outputs.value}"}, retries=5)
    return pipe


@pytest.fixture
def chaos_redis(tmp_path):
    """This test's own Redis (restarting it must not disturb other tests), stopped at the end."""
    server = RedisServer(tmp_path / "redis", password="chaos-pw").start()
    yield server
    server.cleanup()


def test_chaos_storm(tmp_path, monkeypatch, docker_available, chaos_redis):
    size = _size()
    seed = int(os.environ.get("TRAINYARD_CHAOS_SEED") or random.SystemRandom().randrange(1 << 30))
    rng = random.Random(seed)
    print(f"\nchaos: seed {seed}, size {size}")
    server = chaos_redis
    proxy = CuttableProxy(server.port)
    folder = tmp_path / "chaos"
    (folder / "locks").mkdir(parents=True)
    monkeypatch.setenv("TRAINYARD_REDIS_URL", server.url)
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    reset_connections()
    conn = server.client()
    figures = Figures(tasks=size.tasks)
    fleet = Fleet(server, proxy, size.slots, f"chaos{os.getpid()}")
    began, began_wall = time.monotonic(), time.time()
    try:
        for queue in (*QUEUES, "services", "slow"):
            Queue.create(queue)
        pipe = _pipeline(tmp_path)
        ids: list[str] = []
        failing: set[str] = set()
        for q_index, queue in enumerate(QUEUES):
            specs = []
            for i in range(q_index, size.tasks, len(QUEUES)):
                code = 1 if i % 17 == 5 else 0  # some fail on purpose: their retries show as attempts
                specs.append(
                    {
                        "name": f"chaos-{i}",
                        "project": "chaos",
                        "command": [
                            "python",
                            "-S",
                            "-c",
                            TASK_CODE,
                            str(folder),
                            f"{rng.uniform(0, 0.3):.3f}",
                            str(code),
                        ],
                        "retries": 2,
                    }
                )
            created = create_many(specs, queue=queue)  # born queued; the workers start below
            ids += [t.id for t in created]
            failing |= {t.id for t, s in zip(created, specs) if s["command"][-1] == "1"}
        docker_ids = []
        if docker_available:
            for i in range(size.docker_tasks):
                task = Task.create(
                    f"chaos-docker-{i}",
                    "chaos",
                    command=["sleep", "1"],
                    mode="docker",
                    docker_image=docker_available,
                    retries=3,
                )
                docker_ids.append(task.id)
        for index in range(4):
            fleet.start(index)
        for task_id in docker_ids:
            Task.get(task_id).enqueue("q1")
        all_ids = ids + docker_ids

        # the storm: actions spread over the run, triggered by progress (not by the clock)
        actions = ["kill"] * size.kills + ["restart"] * size.restarts + ["cut"] * size.cuts + ["abort"] * size.aborts
        actions += ["outage"] * size.outages + ["lonely"] * (size.lonely if _can_be_another_host() else 0)
        rng.shuffle(actions)
        actions.insert(len(actions) // 3, "pipeline")
        marks = sorted(rng.uniform(0.05, 0.85) for _ in actions)
        pipeline_run = None
        stalls: list[str] = []
        abort_asked: dict[str, float] = {}
        lonely_ids: list[str] = []
        for action, mark in zip(actions, marks):
            while _retrying(_terminal_count, conn) < mark * len(all_ids):
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    conn.xread({keys.EVENTS: "$"}, block=500, count=1)
            if action == "kill":
                index = rng.randrange(4)
                fleet.kill(index)
                fleet.start(index)
                figures.kills += 1
            elif action == "restart":
                server.restart()
                figures.restarts += 1
            elif action == "cut":
                # the worker behind the proxy serves "slow" first: give it a long task, cut it mid-task
                slow = _retrying(
                    create_many,
                    [{"name": "chaos-slow", "project": "chaos", "retries": 2,
                      "command": ["python", "-S", "-c", TASK_CODE, str(folder), "6", "0"]}],
                    queue="slow",
                )  # fmt: skip
                ids.append(slow[0].id)
                all_ids.append(slow[0].id)
                stall = _busy(conn, fleet.workers[3], slow[0].id)
                if stall:
                    stalls.append(stall)
                proxy.cut()
                figures.cuts += 1
                # longer than a claim may go unrefreshed: the worker must fence itself, the reaper requeue
                time.sleep(float(FAST["TRAINYARD_DEAD_AFTER_S"]) * 1.6)
                proxy.restore()
            elif action == "abort":
                # every other abort picks a running task: abort -> SIGTERM is timed on those
                running = _retrying(conn.zrange, keys.status_index("running"), 0, -1) if len(abort_asked) % 2 else []
                wanted = set(ids)
                running = [r.decode() for r in running if r.decode() in wanted]
                victim = rng.choice(running or ids)
                with contextlib.suppress(Exception):
                    asked = time.time()
                    _retrying(Task.get(victim).abort, "chaos abort")
                    abort_asked.setdefault(victim, asked)
                    figures.aborts += 1
            elif action == "outage":
                # longer than half the dead-after bound: running tasks are fenced, and the queued ones
                # are claimed the moment Redis is back (none of those may be killed as "lost")
                server.stop()
                time.sleep(float(FAST["TRAINYARD_DEAD_AFTER_S"]) * 0.7)
                server.start()
                figures.outages += 1
            elif action == "lonely":
                round_ids = _lonely_round(conn, fleet, figures, folder, docker_available, stalls)
                lonely_ids += round_ids
                all_ids += round_ids
            elif action == "pipeline":
                pipeline_run = _retrying(pipe.start, queue="services")
                # its controller's worker is killed while it runs (resumed at the end, as documented)
                running = Task.get(pipeline_run).wait(timeout=120, statuses=[TaskStatus.RUNNING, *FINAL_STATUSES])
                if running.status == TaskStatus.RUNNING:
                    index = fleet.index_of(running.data.runtime.worker, rng.randrange(4))
                    fleet.kill(index)
                    fleet.start(index)
                    figures.kills += 1

        try:
            records = _wait_terminal(conn, all_ids, timeout=600 if size.tasks > 500 else 240)
        except AssertionError as exc:
            named = {name for name in re.findall(r"'(chaos\d+-[\w-]+)'\)", str(exc))}
            for worker in fleet.all:  # what the workers the stragglers name said
                if worker.args[worker.args.index("--name") + 1] in named:
                    print(f"--- {' '.join(worker.args)}\n{worker.output()[-6000:]}")
            raise
        if pipeline_run is None:
            pipeline_run = pipe.start(queue="services")
        controller = Task.get(pipeline_run).wait(timeout=240)
        resumes = 0
        while _lost(controller) and resumes < 5:
            # a controller whose worker died is failed as lost; resuming it is the documented recovery
            resume(conn, pipeline_run)
            resumes += 1
            controller = Task.get(pipeline_run).wait(timeout=240)
        run = run_store.load(conn, pipeline_run)
        rt = controller.data.runtime
        figures.pipeline = f"{run.status} (controller attempts: {rt.attempt}, resumed {resumes}x)"
        controller_said = (controller.status.value, rt.error, rt.log_tail, [a.outcome for a in rt.attempts])
    finally:
        fleet.stop_all()
        proxy.close()
    figures.seconds = time.monotonic() - began
    figures.abort_to_sigterm_ms = _abort_delays(abort_asked, _term_stamps(folder))

    # -- what held ------------------------------------------------------------------------
    by_id = {r.id: r for r in records}
    figures.outcomes = dict(collections.Counter(r.status.value for r in records))
    figures.lost = len(all_ids) - len(records) + sum(1 for r in records if r.status not in FINAL_STATUSES)
    starts, dups, per_attempt = _stamps(folder)
    figures.starts = sum(starts.values())
    figures.concurrent_duplicates = dups
    figures.rerun_tasks = sum(1 for n in starts.values() if n > 1)
    figures.attempts_max = max(r.runtime.attempt for r in records)
    figures.rq_mismatches = sum(not _rq_agrees(conn, r) for r in records)
    leaked = _leaked_processes(set(all_ids), folder)
    containers = _leaked_containers(set(all_ids))
    figures.leaked_processes, figures.leaked_containers = len(leaked), len(containers)
    figures.lost_within_1s = sum(
        1
        for r in records
        for a in r.runtime.attempts
        if a.outcome == "lost" and a.started is not None and a.ended is not None and a.ended - a.started < 1.0
    )
    figures.overlapping_attempts = dups + _docker_overlaps(set(all_ids), began_wall)
    worker_logs = "\n".join(w.output() for w in fleet.all)
    figures.fenced = worker_logs.count("ending it so it cannot run twice")
    figures.reaped = worker_logs.count("reaped task")
    print("chaos figures: " + json.dumps(figures.__dict__, indent=1))

    assert figures.lost == 0
    assert figures.lost_within_1s == 0, "a run started right after Redis returned was killed as lost"
    assert figures.overlapping_attempts == 0
    assert stalls == [], "the worker behind the proxy stopped taking work"
    assert dups == 0, [line for line in (folder / "stamps.log").read_text().splitlines() if "DUP" in line]
    assert leaked == [] and containers == []
    assert figures.rq_mismatches == 0
    assert run.status == "completed", (run.message, run.state, controller_said, worker_logs[-5000:])
    assert [run.state[s].status for s in "abc"] == ["completed"] * 3
    assert Task.get(run.state["c"].task_id).outputs["value"] == 24
    leftover = {k.decode(): (v, by_id.get(k.decode())) for k, v in conn.hgetall(keys.CLAIMS).items()}
    assert leftover == {}
    assert conn.zcard(keys.CLAIMS_REFRESHED) == 0  # the claims' index went with the claims
    if size.cuts:
        assert figures.fenced >= 1, "the cut worker was running a slow task: it must have fenced it"
    assert all(conn.llen(keys.rq_queue(q)) == 0 for q in (*QUEUES, "slow"))
    for record in records:
        rt = record.runtime
        # every attempt is on the record, numbered, closed with an outcome; only the last may succeed
        assert [a.attempt for a in rt.attempts] == list(range(1, rt.attempt + 1)), record.id
        assert all(a.ended is not None and a.outcome for a in rt.attempts), (record.id, rt.attempts)
        assert all(a.outcome in ("failed", "lost", "requeued") for a in rt.attempts[:-1]), (record.id, rt.attempts)
        assert sum(n for (tid, _), n in per_attempt.items() if tid == record.id) <= rt.attempt
        assert all(n == 1 for n in per_attempt.values())  # one process per attempt
        if record.status == TaskStatus.COMPLETED:
            assert rt.attempts[-1].outcome == "completed" and record.id not in failing
        elif record.status == TaskStatus.FAILED:
            assert rt.attempt == record.execution.retries + 1, (record.id, rt.attempts)
            if record.id in failing and all(a.outcome == "failed" for a in rt.attempts):
                assert all(a.exit_code == 1 for a in rt.attempts), (record.id, rt.attempts)
        else:
            assert record.runtime.abort_requested or record.status_message, record.id
    for task_id in failing & set(by_id):
        if by_id[task_id].status != TaskStatus.ABORTED:
            assert by_id[task_id].status == TaskStatus.FAILED


@pytest.fixture
def docker_available():
    """The busybox image when a Docker engine answers, else None (CI requires the engine)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dockerimages import docker_engine, ensure_busybox_image

    engine = docker_engine()
    if engine is None:
        if os.environ.get("TRAINYARD_REQUIRE_DOCKER"):
            pytest.fail("TRAINYARD_REQUIRE_DOCKER is set but no Docker engine answers")
        return None
    return ensure_busybox_image(engine)
