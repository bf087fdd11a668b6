"""Named queues: priorities, moves, dequeue, create/list/show/delete, and refusals."""

from __future__ import annotations

import pytest

from trainyard import InvalidInput, Queue, QueueNotEmpty, QueueNotFound, Task, TaskStatus
from trainyard.queues import keys
from trainyard.queues.newrecords import clone_record


def _make(n: int, prefix: str = "t") -> list[Task]:
    return [Task.create(f"{prefix}{i}", command=["true"]) for i in range(n)]


def names(queue: Queue) -> list[str]:
    return [record.name for _, record in queue.tasks(0, 1000)]


def test_priorities_then_fifo():
    q = Queue.create("q")
    a, b, c, d, e, f = _make(6)
    a.enqueue("q")
    b.enqueue("q", priority=5)
    c.enqueue("q")
    d.enqueue("q", priority=5)
    e.enqueue("q", priority=-1)
    f.enqueue("q", priority=10)
    assert names(q) == ["t5", "t1", "t3", "t0", "t2", "t4"]
    assert [entry.priority for entry in q.entries()] == [10, 5, 5, 0, 0, -1]


def test_front_goes_ahead_of_everything():
    q = Queue.create("q")
    a, b, c = _make(3)
    a.enqueue("q", priority=7)
    b.enqueue("q")
    c.enqueue("q", front=True)
    assert names(q) == ["t2", "t0", "t1"]
    d = Task.create("t3", command=["true"]).enqueue("q", priority=7)
    assert names(q) == ["t2", "t0", "t3", "t1"]  # equal priority: behind the front-runner and t0
    assert d.status == TaskStatus.QUEUED


def test_moves_and_priorities_mixed():
    """After moves, later enqueues still land where their priority says."""
    q = Queue.create("q")
    t = _make(5)
    for task, prio in zip(t, [0, 0, 3, 0, 1]):
        task.enqueue("q", priority=prio)
    assert names(q) == ["t2", "t4", "t0", "t1", "t3"]
    q.move(t[3].id, "top")  # takes priority 3 (the head's)
    assert names(q) == ["t3", "t2", "t4", "t0", "t1"]
    q.move(t[2].id, "bottom")  # drops to priority 0 (the tail's)
    assert names(q) == ["t3", "t4", "t0", "t1", "t2"]
    q.move(t[1].id, 1)  # between t3 (3) and t4 (1): clamped to 1
    assert names(q) == ["t3", "t1", "t4", "t0", "t2"]
    assert q.move(t[0].id, 99) == 4  # past the end: the bottom
    assert names(q) == ["t3", "t1", "t4", "t2", "t0"]
    late = Task.create("late", command=["true"]).enqueue("q", priority=1)
    assert names(q) == ["t3", "t1", "t4", "late", "t2", "t0"]
    Task.create("top", command=["true"]).enqueue("q", priority=4)
    assert names(q)[0] == "top" and late.status == TaskStatus.QUEUED
    assert [e.position for e in q.entries()] == list(range(7))


def test_move_refuses_tasks_not_waiting_there():
    Queue.create("q")
    Queue.create("other")
    waiting, elsewhere, draft = _make(3)
    waiting.enqueue("q")
    elsewhere.enqueue("other")
    with pytest.raises(InvalidInput, match="not waiting in queue 'q'.*in queue 'other'"):
        Queue("q").move(elsewhere.id, "top")
    with pytest.raises(InvalidInput, match="it is draft"):
        Queue("q").move(draft.id, "top")
    with pytest.raises(InvalidInput, match="bad move target"):
        Queue("q").move(waiting.id, "middle")


def test_enqueue_to_unknown_queue_is_refused_unless_created():
    task = Task.create("t", command=["true"])
    with pytest.raises(QueueNotFound, match="no queue named 'nope'"):
        task.enqueue("nope")
    assert Task.get(task.id).status == TaskStatus.DRAFT
    assert not task.connection.exists(keys.rq_queue("nope"))
    task.enqueue("nope", create_queue=True)
    assert Queue("nope").task_ids() == [task.id]


@pytest.mark.parametrize("bad", ["", "has space", "-lead", "a" * 65, "semi;colon"])
def test_bad_queue_names_are_refused(bad):
    with pytest.raises(InvalidInput, match="invalid queue name"):
        Queue.create(bad)


def test_create_list_show_delete():
    Queue.create("b", description="second")
    Queue.create("a")
    with pytest.raises(InvalidInput, match="already exists"):
        Queue.create("a")
    tasks = _make(3)
    for task in tasks:
        task.enqueue("a")
    assert [(q.name, q.length) for q in Queue.list()] == [("a", 3), ("b", 0)]
    page = Queue("a").tasks(offset=1, limit=1)
    assert [(e.position, r.id) for e, r in page] == [(1, tasks[1].id)]
    with pytest.raises(QueueNotEmpty, match="still holds 3 task"):
        Queue("a").delete()
    assert len(Queue("a")) == 3
    returned = Queue("a").delete(force=True)
    assert sorted(returned) == sorted(t.id for t in tasks)
    assert all(Task.get(t.id).status == TaskStatus.DRAFT for t in tasks)
    assert [q.name for q in Queue.list()] == ["b"]
    Queue("b").delete()
    with pytest.raises(QueueNotFound):
        Queue.get("b")


def test_rq_sees_our_queues(conn):
    from rq import Queue as RQQueue
    from rq.serializers import JSONSerializer

    Queue.create("rqview")
    tasks = _make(2)
    for task in tasks:
        task.enqueue("rqview")
    rq_queue = RQQueue("rqview", connection=conn, serializer=JSONSerializer)
    assert rq_queue.job_ids == [t.id for t in tasks]
    assert rq_queue in RQQueue.all(connection=conn, serializer=JSONSerializer)


def test_clone_many_is_born_queued_in_order():
    q = Queue.create("sweep")
    template = Task.create("tmpl", command=["true"], parameters={"lr": 0.1, "bs": 32})
    clones = template.clone_many([{"lr": 0.01 * i} for i in range(5)], name="sweep-{i}", queue="sweep")
    assert names(q) == [f"sweep-{i}" for i in range(5)]
    assert [Task.get(c.id).get_parameter("lr") for c in clones] == [0.01 * i for i in range(5)]
    assert all(Task.get(c.id).data.parent == template.id for c in clones)
    assert all(Task.get(c.id).status == TaskStatus.QUEUED for c in clones)


def test_clone_many_to_unknown_queue_writes_nothing():
    template = Task.create("tmpl", command=["true"])
    with pytest.raises(QueueNotFound):
        template.clone_many([{"a": 1}, {"a": 2}], queue="missing")
    assert [t.id for t in Task.list()] == [template.id]


def test_bulk_writes_match_one_by_one_enqueue(conn):
    """clone_many writes what Task.create + enqueue write: record, RQ job hash, indexes, event, order."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    q = Queue.create("mixed")
    low, high = _make(2, "solo")
    low.enqueue("mixed", priority=1)
    high.enqueue("mixed", priority=9)
    template = Task.create("tmpl", command=["true"], tags=["t1"])
    clones = template.clone_many([{}, {}, {}], name="c{i}", queue="mixed", priority=5, tags=["hpo"])
    assert names(q) == ["solo1", "c0", "c1", "c2", "solo0"]  # between the priorities, first in first out
    assert [e.priority for e in q.entries()] == [9, 5, 5, 5, 1]
    one = clones[1]
    job = Job.fetch(one.id, connection=conn, serializer=JSONSerializer)
    solo_job = Job.fetch(low.id, connection=conn, serializer=JSONSerializer)
    assert (job.func_name, job.args, job.origin, job.get_status()) == (solo_job.func_name, [one.id], "mixed", "queued")
    assert set(conn.hkeys(keys.rq_job(one.id))) == set(conn.hkeys(keys.rq_job(low.id)))
    for index in (keys.ALL, keys.status_index("queued"), keys.project_index("default"), keys.queue_index("mixed")):
        assert conn.zscore(index, one.id) == pytest.approx(one.data.created)
    assert conn.zscore(keys.tag_index("hpo"), one.id) is not None
    assert conn.zscore(keys.tag_index("t1"), one.id) is None
    created = [
        fields for _, fields in conn.xrange(keys.EVENTS) if fields[b"task"] == one.id.encode()
    ]  # one "created" event, born queued
    assert created == [
        {b"task": one.id.encode(), b"kind": b"created", b"status": b"queued", b"prev": b"", b"project": b"default",
         b"queue": b"mixed"}
    ]  # fmt: skip
    assert Task.get_task(project="default", name="c1") == one
    stored = Task.get(one.id).data
    assert stored == one.data


def test_bulk_create_refuses_a_taken_id_and_writes_nothing(conn):
    from trainyard.queues.store import TaskStore

    Queue.create("q")
    taken = Task.create("old", command=["true"])
    fresh = Task.create("fresh", command=["true"]).data.model_copy(update={"id": "00000000000000aa"})
    clash = taken.data.model_copy(update={"name": "clash"})
    before = conn.dbsize()
    with pytest.raises(InvalidInput, match="task id already exists"):
        TaskStore(conn).create_many([fresh, clash])
    assert conn.dbsize() == before
    assert not conn.exists(keys.task(fresh.id))


def test_store_new_is_born_queued_or_writes_nothing(conn):
    """A controller's prepared clone: one write, born queued; an unknown queue leaves no draft behind."""
    Queue.create("steps")
    template = Task.create("tmpl", command=["true"])
    record = clone_record(template.data, "step-a", None, {"lr": 1}, None, None)
    task = Task.store_new(record, "steps")
    assert Task.get(task.id).status == TaskStatus.QUEUED
    assert [e.task_id for e in Queue("steps").entries()] == [task.id]
    kinds = [f[b"kind"] for _, f in conn.xrange(keys.EVENTS) if f[b"task"] == task.id.encode()]
    assert kinds == [b"created"]
    orphan = clone_record(template.data, "step-b", None, None, None, None)
    with pytest.raises(QueueNotFound):
        Task.store_new(orphan, "missing")
    assert not conn.exists(keys.task(orphan.id))
