"""The status machine: legal moves, refused moves, atomicity under races, events."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from trainyard import IllegalTransition, Queue, Task, TaskStatus
from trainyard.queues import keys
from trainyard.queues.store import TaskStore


@pytest.fixture
def queue():
    return Queue.create("work")


def _store(task: Task) -> TaskStore:
    return TaskStore(task.connection)


def test_draft_to_queued_to_running_to_completed(queue):
    task = Task.create("t", command=["true"])
    assert task.status == TaskStatus.DRAFT
    task.enqueue("work")
    assert task.status == TaskStatus.QUEUED and task.data.queued_at
    store = _store(task)
    running = store.update(task.id, lambda r: None, action="start")
    assert running.status == TaskStatus.RUNNING
    done = store.update(task.id, lambda r: None, action="complete")
    assert done.status == TaskStatus.COMPLETED


def test_illegal_transitions_name_both_states(queue):
    task = Task.create("t", command=["true"]).enqueue("work")
    store = _store(task)
    store.update(task.id, lambda r: None, action="start")
    with pytest.raises(IllegalTransition) as info:
        Task.get(task.id).enqueue("work")
    assert str(info.value) == f"cannot enqueue task {task.id}: it is running (allowed from: draft)"
    store.update(task.id, lambda r: None, action="abort")
    with pytest.raises(IllegalTransition, match="cannot complete task .*: it is aborted \\(allowed from: running\\)"):
        store.update(task.id, lambda r: None, action="complete")
    assert Task.get(task.id).status == TaskStatus.ABORTED  # unchanged by the refused move


def test_refused_edits_leave_the_record_untouched(queue):
    task = Task.create("t", command=["true"], parameters={"a": 1}).enqueue("work")
    before = task.connection.get(keys.task(task.id))
    with pytest.raises(IllegalTransition, match="it is queued"):
        task.set_parameters({"a": 2})
    with pytest.raises(IllegalTransition):
        task.reset()
    assert task.connection.get(keys.task(task.id)) == before


def test_dequeue_returns_to_draft_and_removes_job(queue):
    task = Task.create("t", command=["true"]).enqueue("work")
    assert queue.task_ids() == [task.id]
    task.dequeue()
    assert task.status == TaskStatus.DRAFT
    assert queue.task_ids() == []
    assert not task.connection.exists(keys.rq_job(task.id))


def test_abort_queued_leaves_the_queue_and_reset_clears_results(queue):
    task = Task.create("t", command=["true"]).enqueue("work")
    task.abort()
    assert task.status == TaskStatus.ABORTED and queue.task_ids() == []
    task.reset()
    assert task.status == TaskStatus.DRAFT
    assert task.data.runtime.exit_code is None and task.data.ended is None
    task.enqueue("work")  # a reset task can run again
    assert queue.task_ids() == [task.id]


def test_abort_of_running_task_is_a_request(queue):
    task = Task.create("t", command=["true"]).enqueue("work")
    _store(task).update(task.id, lambda r: None, action="start")
    task.abort("stop it")
    assert task.status == TaskStatus.RUNNING
    assert task.data.runtime.abort_requested and task.data.status_message == "stop it"


def test_rq_job_agrees_with_the_record(queue):
    task = Task.create("t", command=["true"]).enqueue("work")
    job = Job.fetch(task.id, connection=task.connection, serializer=JSONSerializer)
    assert job.get_status() == "queued" and job.origin == "work"
    assert job.func_name == "trainyard.worker.run_task" and job.args == [task.id] and job.kwargs == {}
    store = _store(task)
    store.update(task.id, lambda r: setattr(r.runtime, "worker", "w1"), action="start")
    job = Job.fetch(task.id, connection=task.connection, serializer=JSONSerializer)
    assert job.get_status() == "started" and job.worker_name == "w1"
    store.update(task.id, lambda r: None, action="fail")
    assert Job.fetch(task.id, connection=task.connection, serializer=JSONSerializer).get_status() == "failed"
    assert task.connection.ttl(keys.rq_job(task.id)) > 0


def test_every_transition_appends_an_event(queue):
    conn = queue.connection
    task = Task.create("t", command=["true"]).enqueue("work")
    task.dequeue()
    entries = conn.xrange(keys.EVENTS)
    seen = [(f[b"task"].decode(), f[b"kind"].decode(), f[b"prev"].decode(), f[b"status"].decode()) for _, f in entries]
    assert seen == [
        (task.id, "created", "", "draft"),
        (task.id, "status", "draft", "queued"),
        (task.id, "status", "queued", "draft"),
    ]


def _race(url: str, task_id: str, action: str, barrier, results) -> None:
    os.environ["TRAINYARD_REDIS_URL"] = url
    from trainyard.connection import reset_connections

    reset_connections()
    task = Task.get(task_id)
    barrier.wait()
    try:
        if action == "dequeue":
            task.dequeue()
        else:
            TaskStore(task.connection).update(task_id, lambda r: None, action="start")
        results.put((action, "won"))
    except IllegalTransition as exc:
        results.put((action, f"refused: {exc.current}"))


@pytest.mark.parametrize("round_", range(5))
def test_two_processes_racing_exactly_one_wins(queue, redis_server, round_):
    """A worker starting the task and a user dequeueing it at the same instant: one wins."""
    task = Task.create("race", command=["true"]).enqueue("work")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(redis_server.url, task.id, a, barrier, results)) for a in ("dequeue", "start")
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    outcomes = dict(results.get(timeout=10) for _ in procs)
    winners = [a for a, o in outcomes.items() if o == "won"]
    assert len(winners) == 1, outcomes
    final = Task.get(task.id)
    if winners == ["dequeue"]:
        assert final.status == TaskStatus.DRAFT and outcomes["start"] == "refused: draft"
    else:
        assert final.status == TaskStatus.RUNNING and outcomes["dequeue"] == "refused: running"
    assert final.data.rev == 2  # created, enqueued, then exactly one more write
