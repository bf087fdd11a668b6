"""The claims' index (a sorted set scored by each claim's last refresh): every write of a claim keeps
it equal to the claims hash, and the reaper reads only its old end (issue 17: a reaper whose cost
follows the dead, not the living). Real Redis, the real scripts; the workers are the dispatcher
and heartbeat calls a worker makes (their processes are tested elsewhere)."""

from __future__ import annotations

import json
import time

import pytest

from trainyard import Queue, Task, TaskStatus
from trainyard.controller.in_process import LocalController
from trainyard.queues import keys, reaper, workers
from trainyard.queues.backend import fleet
from trainyard.queues.dispatch import Claimed, Dispatcher

DEAD_AFTER = 60.0  # the bound these tests pass to the reaper; "stale" claims are older than it


def _pass(conn) -> list[reaper.Reaped]:
    """One reaper pass (``reap`` without its lease, lock and server-uptime guard: the test server
    has been up for less than the bound)."""
    return reaper._reap(conn, DEAD_AFTER)


def _index(conn) -> dict[str, float]:
    return {m.decode(): s for m, s in conn.zrange(keys.CLAIMS_REFRESHED, 0, -1, withscores=True)}


def _claims(conn) -> set[str]:
    return {k.decode() for k in conn.hkeys(keys.CLAIMS)}


def _in_step(conn) -> set[str]:
    """The index holds exactly the claimed ids; returns them."""
    assert set(_index(conn)) == _claims(conn)
    return _claims(conn)


def _register(conn, name: str, current: list[str] | None = None) -> workers.WorkerInfo:
    info = workers.WorkerInfo(name=name, host="h", pid=1, queues=["cpu"], current=current or [])
    workers.register(conn, info, lambda _pid: False)
    return info


def _claimed(conn, dispatcher: Dispatcher, name: str = "t", retries: int = 0) -> Task:
    task = Task.create(name, command=["true"], retries=retries).enqueue("cpu")
    assert dispatcher.claim_head("cpu", task.id)
    return task


def _age(conn, worker: str, task_id: str, seconds: float) -> None:
    """Make ``task_id``'s claim look ``seconds`` old: the worker's last heartbeat was that long ago
    (its registry entry, or its lack of one, unchanged)."""
    entry = conn.get(keys.worker(worker))
    fleet.heartbeat(conn, worker, entry or "{}", 60_000, time.time() - seconds, [task_id, ""], announce=False)
    if entry is None:
        conn.delete(keys.worker(worker))


def test_the_index_follows_claim_start_finish_requeue_abort_and_return(conn):
    Queue.create("cpu")
    w = Dispatcher(conn, "w1", "h")
    done = _claimed(conn, w, "done")
    assert _in_step(conn) == {done.id}
    assert w.start(_claim_of(done), [])
    assert _in_step(conn) == {done.id}
    w.finish(done.id, "completed", exit_code=0)
    assert _in_step(conn) == set()

    again = _claimed(conn, w, "again")
    w.start(_claim_of(again), [])
    w.requeue(again.id, "stopped")  # back to the queue: no claim until the next claim
    assert Task.get(again.id).status == TaskStatus.QUEUED and _in_step(conn) == set()
    assert w.claim_head("cpu", again.id)
    assert _in_step(conn) == {again.id}
    Task.get(again.id).abort()  # claimed, not started: aborted at once, the claim goes
    assert _in_step(conn) == set()

    running = _claimed(conn, w, "running")
    w.start(_claim_of(running), [])
    Task.get(running.id).abort()  # a running one: the worker ends it
    w.finish(running.id, "aborted")
    assert Task.get(running.id).status == TaskStatus.ABORTED and _in_step(conn) == set()

    failed = _claimed(conn, w, "failed", retries=1)
    w.start(_claim_of(failed), [])
    w.finish(failed.id, "failed", exit_code=1)  # a retry: requeued at the front, the claim goes
    assert Task.get(failed.id).status == TaskStatus.QUEUED and _in_step(conn) == set()


def _claim_of(task: Task) -> Claimed:
    return Claimed(task.id, "cpu")


def test_a_dead_workers_claims_are_returned_or_requeued_and_leave_the_index(conn):
    Queue.create("cpu")
    dead = Dispatcher(conn, "dead", "h")
    never_started = _claimed(conn, dead, "never-started")
    started = _claimed(conn, dead, "started", retries=1)
    dead.start(_claim_of(started), [])
    for task in (never_started, started):
        _age(conn, "dead", task.id, DEAD_AFTER + 5)
    assert _in_step(conn) == {never_started.id, started.id}
    outcomes = {r.task_id: r.outcome for r in _pass(conn)}
    assert outcomes == {never_started.id: "returned", started.id: "requeued"}
    assert _in_step(conn) == set()
    assert set(Queue("cpu").task_ids()) == {never_started.id, started.id}


def test_the_reaper_reads_only_claims_older_than_the_bound(conn):
    """A worker with no registry entry but whose claims were refreshed within the bound keeps
    them (the reaper never reads them); only the stale one is judged."""
    Queue.create("cpu")
    w = Dispatcher(conn, "w1", "h")
    fresh = [_claimed(conn, w, f"fresh-{i}") for i in range(20)]
    for task in fresh:
        w.start(_claim_of(task), [])
    stale = _claimed(conn, Dispatcher(conn, "w2", "h"), "stale")
    _age(conn, "w2", stale.id, DEAD_AFTER + 5)
    fleet.heartbeat(conn, "w1", "{}", 60_000, time.time(), [x for t in fresh for x in (t.id, "")])

    assert set(fleet.stale_claims(conn, time.time() - DEAD_AFTER)) == {stale.id}
    assert [r.task_id for r in _pass(conn)] == [stale.id]
    assert _in_step(conn) == {t.id for t in fresh}
    assert all(Task.get(t.id).status == TaskStatus.RUNNING for t in fresh)


def test_a_stale_claim_of_a_live_worker_that_runs_it_stays(conn):
    """Stale in the index but listed by its worker's live entry (a heartbeat that has not come
    round yet): read, judged alive, kept."""
    Queue.create("cpu")
    w = Dispatcher(conn, "w1", "h")
    task = _claimed(conn, w)
    w.start(_claim_of(task), [])
    _register(conn, "w1", current=[task.id])
    _age(conn, "w1", task.id, DEAD_AFTER + 5)
    assert _pass(conn) == []
    assert _in_step(conn) == {task.id}
    _register(conn, "w1", current=[])  # alive under the same name, not running it: a restarted worker
    assert [r.outcome for r in _pass(conn)] == ["failed"]
    assert _in_step(conn) == set()


def test_a_refresh_moves_the_claim_to_the_young_end_and_never_brings_back_an_ended_one(conn):
    Queue.create("cpu")
    w = Dispatcher(conn, "w1", "h")
    task = _claimed(conn, w)
    w.start(_claim_of(task), [])
    _age(conn, "w1", task.id, DEAD_AFTER + 5)
    assert task.id in fleet.stale_claims(conn, time.time() - DEAD_AFTER)
    now = time.time()
    fleet.heartbeat(conn, "w1", "{}", 60_000, now, [task.id, "4242"])
    assert _index(conn)[task.id] == now and fleet.stale_claims(conn, time.time() - DEAD_AFTER) == {}
    assert json.loads(conn.hget(keys.CLAIMS, task.id))["pgid"] == 4242
    fleet.heartbeat(conn, "w2", "{}", 60_000, now + 10, [task.id, ""])  # not w2's claim: untouched
    assert _index(conn)[task.id] == now
    w.finish(task.id, "completed", exit_code=0)
    fleet.heartbeat(conn, "w1", "{}", 60_000, now + 10, [task.id, ""])  # a late heartbeat
    assert _in_step(conn) == set()


def test_release_drops_only_the_named_workers_claim(conn):
    Queue.create("cpu")
    task = _claimed(conn, Dispatcher(conn, "w1", "h"))
    Dispatcher(conn, "w2", "h").release(task.id)
    assert _in_step(conn) == {task.id}
    Dispatcher(conn, "w1", "h").release(task.id)
    assert _in_step(conn) == set()


def test_a_local_controllers_claim_is_indexed_and_dropped(conn):
    task = Task.create("controller", command=["true"])
    with LocalController(conn, task.id) as controller:
        assert _in_step(conn) == {task.id}
        controller.finish("completed")
    assert _in_step(conn) == set()


def test_claims_written_by_an_older_trainyard_without_the_index_are_still_reaped(conn):
    """An upgrade: claims in the hash only. The first pass indexes them by their own time; the
    stale one is reaped, the fresh one stays; an index entry without a claim leaves."""
    Queue.create("cpu")
    old = Task.create("old", command=["true"]).enqueue("cpu")
    young = Task.create("young", command=["true"]).enqueue("cpu")
    for task in (old, young):
        conn.lrem(keys.rq_queue("cpu"), 1, task.id)  # what the old claim script did: pop, then write
    conn.hset(keys.CLAIMS, old.id, json.dumps({"worker": "w0", "host": "h", "ts": time.time() - 600, "queue": "cpu"}))
    conn.hset(keys.CLAIMS, young.id, json.dumps({"worker": "w0", "host": "h", "ts": time.time(), "queue": "cpu"}))
    conn.zadd(keys.CLAIMS_REFRESHED, {"no-such-claim": 1.0})
    assert [(r.task_id, r.outcome) for r in _pass(conn)] == [(old.id, "returned")]
    assert _in_step(conn) == {young.id}
    assert Queue("cpu").task_ids() == [old.id]


def test_an_unreadable_claim_is_dropped_not_a_stuck_reaper(conn):
    Queue.create("cpu")
    task = _claimed(conn, Dispatcher(conn, "w1", "h"))
    Dispatcher(conn, "w1", "h").start(_claim_of(task), [])
    conn.hset(keys.CLAIMS, task.id, "not json")
    conn.zadd(keys.CLAIMS_REFRESHED, {task.id: 1.0})
    fleet.heartbeat(conn, "w1", "{}", 60_000, time.time(), [task.id, ""])  # skips it, never fails
    assert _index(conn)[task.id] == 1.0
    assert [r.outcome for r in _pass(conn)] == ["dropped"]
    assert _in_step(conn) == set()


def test_right_after_a_redis_restart_no_claim_is_judged(conn):
    """The server-uptime guard still holds: a server up for less than the bound reaps nothing."""
    Queue.create("cpu")
    task = _claimed(conn, Dispatcher(conn, "w1", "h"))
    _age(conn, "w1", task.id, 10 * DEAD_AFTER)
    bound = fleet.server_uptime_s(conn) + DEAD_AFTER
    assert reaper.reap(conn, bound) == []
    assert _in_step(conn) == {task.id}
    assert [r.outcome for r in _pass(conn)] == ["returned"]


def test_a_claim_refreshed_by_an_older_trainyard_moves_up_the_index_and_is_not_judged(conn):
    """A rolling upgrade: an older worker refreshes the claim's own time but knows no index. The
    pass that finds it at the old end moves it up to that time; the next passes do not read it."""
    Queue.create("cpu")
    task = _claimed(conn, Dispatcher(conn, "w1", "h"))
    _age(conn, "w1", task.id, DEAD_AFTER + 5)
    claim = json.loads(conn.hget(keys.CLAIMS, task.id))
    now = time.time()
    conn.hset(keys.CLAIMS, task.id, json.dumps({**claim, "ts": now}))  # the older refresh: the hash only
    assert fleet.stale_claims(conn, now - DEAD_AFTER) == {}
    assert _index(conn)[task.id] == pytest.approx(now, abs=1e-3)
    assert _pass(conn) == [] and _in_step(conn) == {task.id}
