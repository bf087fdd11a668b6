"""The peers of ``bench_pipeline.py``: a linear chain of the same step in raw RQ and in Celery.

RQ: ``steps`` jobs enqueued at once, each ``depends_on`` the one before (RQ enqueues a dependent
when its parent succeeds), one RQ ``Worker``. Celery: ``chain(...)`` of the same task (its worker
publishes the next step when one succeeds), one prefork worker with one child. Each step runs the
same stamp command as the trainyard steps and returns ``[its process's stamp, the time the job
function returned]``; a hop is the child's stamp minus the parent's return, so the peer's "parent
done" is earlier than trainyard's (its record's ``ended``, after the worker stored the log):
the comparison leans towards the peers.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from common import REPO, ChildProcesses, summarize
from rq import Queue as RQQueue
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker_registration import REDIS_WORKER_KEYS

sys.path.insert(0, str(REPO))
from benchmarks import celeryjobs  # noqa: E402

RQ_QUEUE = "chain-rq"
CELERY_QUEUE = "chain-celery"
STEP_FUNC = "benchmarks.rqjobs.run_stamp_end"
CELERY_STEP = "bench.run_stamp_end"
WAIT_S = 120.0
POLL_S = 0.005


def _wait_registered(conn, check, proc, children: ChildProcesses, name: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}):\n{children.tail(proc)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start within {WAIT_S:g}s")
        time.sleep(POLL_S)
    time.sleep(0.3)


def _hops(pairs: list[list[float]]) -> list[float]:
    """ms from each step's function return to the next step's process start."""
    return [(pairs[i + 1][0] - pairs[i][1]) * 1000 for i in range(len(pairs) - 1)]


def rq_chain(conn, url: str, env: dict, children: ChildProcesses, argv: list[str], steps: int, runs: int) -> dict:
    name = f"bench-chain-rq-{uuid.uuid4().hex[:6]}"
    worker_argv = [sys.executable, "-m", "rq.cli", "worker", "-u", url, "-w", "rq.worker.Worker", "-S", "json"]
    proc = children.start([*worker_argv, "-P", str(REPO), "-n", name, RQ_QUEUE], name, env=env)
    try:
        _wait_registered(conn, lambda: conn.sismember(REDIS_WORKER_KEYS, f"rq:worker:{name}"), proc, children, name)
        queue = RQQueue(RQ_QUEUE, connection=conn, serializer=JSONSerializer)
        hops: list[float] = []
        walls: list[float] = []
        for run in range(runs + 1):  # the first run warms the worker up
            t0 = time.perf_counter()
            jobs: list[Job] = []
            for _ in range(steps):
                jobs.append(queue.enqueue(STEP_FUNC, argv, depends_on=jobs[-1] if jobs else None))
            pairs = []
            for job in jobs:
                result = job.latest_result(timeout=int(WAIT_S))
                if result is None or result.type != result.Type.SUCCESSFUL:
                    raise RuntimeError(f"RQ chain step {job.id}: {result and result.exc_string}")
                pairs.append(result.return_value)
            if run:
                walls.append(time.perf_counter() - t0)
                hops += _hops(pairs)
    finally:
        children.stop([proc])
    return _entry("RQ Worker, depends_on chain", hops, walls)


def celery_chain(conn, url: str, env: dict, children: ChildProcesses, argv: list[str], steps: int, runs: int) -> dict:
    from celery import chain

    celeryjobs.configure(url)
    name = f"bench-chain-celery-{uuid.uuid4().hex[:6]}"
    worker_argv = [sys.executable, "-m", "celery", "-A", "benchmarks.celeryjobs", "worker", "-Q", CELERY_QUEUE]
    worker_argv += ["-n", f"{name}@bench", "-c", "1", "-P", "prefork", "-l", "WARNING"]
    worker_argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    proc = children.start(worker_argv, name, env=env)
    try:
        ready = celeryjobs.READY_PREFIX + f"{name}@bench"
        _wait_registered(conn, lambda: conn.exists(ready), proc, children, name)
        step = celeryjobs.app.signature(CELERY_STEP, args=(argv,), queue=CELERY_QUEUE, immutable=True)
        hops: list[float] = []
        walls: list[float] = []
        for run in range(runs + 1):
            ids = [uuid.uuid4().hex for _ in range(steps)]
            t0 = time.perf_counter()
            chain(*(step.clone(task_id=task_id) for task_id in ids)).apply_async()
            pairs = [celeryjobs.app.AsyncResult(task_id).get(timeout=WAIT_S) for task_id in ids]
            if run:
                walls.append(time.perf_counter() - t0)
                hops += _hops(pairs)
    finally:
        children.stop([proc])
    return _entry("Celery, chain", hops, walls)


def _entry(label: str, hops: list[float], walls: list[float]) -> dict[str, Any]:
    return {
        "label": label,
        "hop_ms": {k: round(v, 3) for k, v in summarize(hops).items()},
        "pipeline_s": round(summarize(walls)["median"], 3),
    }


def run_peers(conn, url: str, env: dict, argv: list[str], steps: int, runs: int) -> dict:
    """Both peers, each with its own worker process (stopped at the end)."""
    with ChildProcesses(prefix="trainyard-bench-chain-") as children:
        return {
            "rq": rq_chain(conn, url, env, children, argv, steps, runs),
            "celery": celery_chain(conn, url, env, children, argv, steps, runs),
        }
