"""Dispatch without broadcast (issue 17): one queued task wakes one waiting worker, control
reaches one worker through its own inbox, and a task's end wakes only who waits for it."""

from __future__ import annotations

import threading

import redis

from trainyard import Queue, Task
from trainyard.queues import keys
from trainyard.queues.backend import queues as queue_lists
from trainyard.queues.backend import wake
from trainyard.queues.task import create_many


def _blocked_in_blpop(conn: redis.Redis) -> int:
    return sum(1 for c in conn.client_list() if c.get("cmd") == "blpop" and "b" in c.get("flags", ""))


def _await_blocked(conn: redis.Redis, n: int) -> None:
    """Wait until ``n`` clients are blocked in BLPOP (the server says so: no sleeps on guesses)."""
    seen = threading.Event()
    while not seen.wait(0.01):
        if _blocked_in_blpop(conn) >= n:
            seen.set()


def test_one_queued_task_wakes_exactly_one_of_many_waiting_workers(conn):
    Queue.create("q")
    woken: list[str] = []
    lock = threading.Lock()

    def waiter(name: str) -> None:
        own = redis.Redis(connection_pool=conn.connection_pool)
        got = wake.wait(own, name, ["q"], 120)
        with lock:
            woken.append(f"{name}:{got}")

    threads = [threading.Thread(target=waiter, args=(f"w{i}",), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    _await_blocked(conn, 6)
    Task.create("one", command=["true"]).enqueue("q")
    done = threading.Event()
    while not done.wait(0.01):  # the one token reaches one waiter; the five others stay blocked
        if len(woken) == 1 and _blocked_in_blpop(conn) == 5:
            done.set()
    assert woken[0].endswith("('bell', 'q')")
    assert conn.llen(keys.bell("q")) == 0
    for i in range(5):
        Task.create(f"more{i}", command=["true"]).enqueue("q")
    for t in threads:
        t.join(60)
    assert sorted(w.split(":")[0] for w in woken) == [f"w{i}" for i in range(6)]  # each woke once


def test_a_bell_never_holds_more_tokens_than_its_queue_holds_tasks(conn):
    Queue.create("q")
    tasks = [Task.create(f"t{i}", command=["true"]).enqueue("q") for i in range(3)]
    assert conn.llen(keys.bell("q")) == 3
    wake.ring(conn, "q")  # a worker passing a token on to a full bell adds nothing
    assert conn.llen(keys.bell("q")) == 3
    head = queue_lists.heads(conn, ["q"])[0][0].decode()
    assert queue_lists.claim(conn, "q", head, "w", "h", 0)
    assert conn.llen(keys.bell("q")) == 2  # the claim took the task's token with it
    tasks[2].dequeue()
    conn.lpop(keys.bell("q"))  # one worker woke for it and found nothing: no token is made up
    wake.ring(conn, "q")
    assert conn.llen(keys.bell("q")) == 1


def test_tasks_created_queued_in_bulk_ring_once_each(conn):
    Queue.create("q")
    create_many([{"name": f"b{i}", "command": ["true"]} for i in range(4)], queue="q")
    assert conn.llen(keys.bell("q")) == conn.llen(keys.rq_queue("q")) == 4


def test_a_gpu_release_wakes_only_the_waiters_of_that_host(conn):
    wake.wait_for_gpu(conn, "host-a", "wa")
    wake.wait_for_gpu(conn, "host-b", "wb")
    from trainyard.queues.backend import fleet

    fleet.release_gpus(conn, "host-a", "task", "someone", [0])
    assert wake.wait(conn, "wa", [], 1) == ("inbox", "gpu")
    assert conn.llen(keys.inbox("wb")) == 0  # the other host's waiter sleeps on
    assert conn.sismember(keys.gpu_waiters("host-b"), "wb")
    assert not conn.exists(keys.gpu_waiters("host-a"))  # woken waiters register again if they still wait


def test_a_worker_command_goes_to_that_workers_inbox_only(conn):
    from trainyard.queues import workers

    for name in ("a", "b"):
        workers.register(conn, workers.WorkerInfo(name=name, host="h", pid=1, queues=["q"]), lambda _pid: True)
    workers.send_command(conn, "a", "drain")
    assert wake.wait(conn, "a", [], 1) == ("inbox", "drain")
    assert conn.llen(keys.inbox("b")) == 0


def test_abort_of_a_running_task_goes_to_its_workers_inbox_only(conn):
    from trainyard.queues.dispatch import Dispatcher

    Queue.create("q")
    task = Task.create("long", command=["true"]).enqueue("q")
    dispatcher = Dispatcher(conn, "runner", "h")
    assert dispatcher.start(dispatcher.claim_head("q", task.id), []) is not None
    task.abort("stop it")
    # the message names the attempt it was asked for
    assert wake.wait(conn, "runner", [], 1) == ("inbox", f"abort {task.id} 1")
    assert not [k for k in conn.keys(keys.inbox("*")) if k.decode() != keys.inbox("runner")]


def test_an_abort_for_an_earlier_attempt_leaves_the_running_one_alone():
    """An inbox message outlives the attempt it was sent for (the task was requeued and the same
    worker took it again): only an abort naming the running attempt ends it."""
    from types import SimpleNamespace

    from trainyard.worker.agent import Worker

    asked: list[int] = []
    run = SimpleNamespace(attempt=2, request_abort=lambda: asked.append(run.attempt))
    worker = SimpleNamespace(running={"t1": run})
    Worker._message(worker, "abort t1 1")
    assert asked == []
    Worker._message(worker, "abort t1 2")
    assert asked == [2]


def test_a_wait_longer_than_the_socket_timeout_ends_empty_not_as_a_read_timeout(conn):
    """The worker's 30 s backstop wait on a client whose socket timeout is 30 s used to race the
    socket's deadline: under load the empty reply came late and the wait failed as a read timeout
    (a warning, a dropped connection, a second's pause). The wait now ends short of that deadline."""
    Queue.create("q")
    kwargs = {**conn.connection_pool.connection_kwargs, "socket_timeout": 4.0}
    short = redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))
    try:
        assert wake.wait(short, "w", ["q"], 60.0) is None  # before: redis.TimeoutError after 4 s
        Task.create("one", command=["true"]).enqueue("q")
        assert wake.wait(short, "w", ["q"], 60.0) == ("bell", "q")
    finally:
        short.close()
        short.connection_pool.disconnect()


def test_a_worker_woken_by_its_backstop_leaves_a_fresh_head_to_the_token_holder(conn):
    """A backstop that runs out while a task was just queued must not race the worker its token
    woke (with a thousand workers a backstop runs out every few ms: a lost race per task); a task
    queued longer than the bound (its token lost) is taken."""
    from trainyard.worker.gpu_holds import GpuHolds
    from trainyard.worker.gpus import default_nvml
    from trainyard.worker.scheduler import Scheduler, SchedulerConfig

    Queue.create("q")
    task = Task.create("one", command=["true"]).enqueue("q")
    scheduler = Scheduler(conn, GpuHolds(conn, "h", "w"), default_nvml, SchedulerConfig(gpus=[], queue_gpus={}))
    assert scheduler.choose(["q"], min_age_s=3600.0) is None  # queued moments ago: left alone
    assert scheduler.blocked == {}  # and not reported as blocked (nothing is passed on)
    chosen = scheduler.choose(["q"], min_age_s=1e-6)  # it has waited longer than that
    assert chosen is not None and chosen.task_id == task.id
    assert scheduler.choose(["q"]).task_id == task.id  # a wake-up: no bound
