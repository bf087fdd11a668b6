"""Lookups and lists: by id, by project and name, filters, pagination, and event-driven wait."""

from __future__ import annotations

import threading

import pytest

from trainyard import InvalidInput, Queue, Task, TaskNotFound, TaskStatus, WaitTimeout
from trainyard.queues.store import TaskStore


def test_get_unknown_id():
    with pytest.raises(TaskNotFound, match="no task with id 'deadbeef'"):
        Task.get("deadbeef")


def test_get_task_by_project_and_name_returns_newest():
    Task.create("train", "a", command=["true"])
    newest = Task.create("train", "a", command=["true"])
    other = Task.create("train", "b", command=["true"])
    assert Task.get_task(project="a", name="train") == newest
    assert Task.get_task(project="b", name="train") == other
    newest.delete()
    assert Task.get_task(project="a", name="train").id != newest.id
    with pytest.raises(TaskNotFound, match="no task named 'x' in project 'a'"):
        Task.get_task(project="a", name="x")


def test_filters_and_pagination():
    Queue.create("gpu")
    made = []
    for i in range(30):
        task = Task.create(
            f"sweep-{i}" if i % 2 else f"other-{i}",
            "p1" if i < 20 else "p2",
            command=["true"],
            tags=["even"] if i % 2 == 0 else [],
        )
        if i % 3 == 0:
            task.enqueue("gpu")
        made.append(task)
    newest_first = [t.id for t in reversed(made)]
    assert [t.id for t in Task.list(limit=10)] == newest_first[:10]
    assert [t.id for t in Task.list(limit=10, offset=25)] == newest_first[25:]
    assert {t.id for t in Task.list(project="p2", limit=100)} == {t.id for t in made[20:]}
    queued = Task.list(status="queued", limit=100)
    assert {t.id for t in queued} == {t.id for i, t in enumerate(made) if i % 3 == 0}
    assert {t.id for t in Task.list(queue="gpu", limit=100)} == {t.id for t in queued}
    both = Task.list(project="p1", status=["queued"], tag="even", limit=100)
    assert {t.id for t in both} == {t.id for i, t in enumerate(made) if i < 20 and i % 6 == 0}
    assert {t.name for t in Task.list(name="sweep-*", limit=100)} == {f"sweep-{i}" for i in range(1, 30, 2)}
    assert {t.name for t in Task.list(name="her", limit=100)} == {f"other-{i}" for i in range(0, 30, 2)}
    with pytest.raises(InvalidInput, match="unknown status 'done'"):
        Task.list(status="done")


def test_indexes_follow_status_changes():
    Queue.create("q")
    task = Task.create("t", command=["true"]).enqueue("q")
    assert [t.id for t in Task.list(status="queued")] == [task.id]
    task.dequeue()
    assert Task.list(status="queued") == []
    assert [t.id for t in Task.list(status="draft")] == [task.id]
    assert TaskStore(task.connection).count() == 1


def test_wait_is_woken_by_the_status_event():
    Queue.create("q")
    task = Task.create("t", command=["true"]).enqueue("q")
    store = TaskStore(task.connection)
    started = threading.Event()
    result = {}

    def waiter():
        started.set()
        result["task"] = Task.get(task.id).wait(timeout=60)

    thread = threading.Thread(target=waiter)
    thread.start()
    started.wait()
    store.update(task.id, lambda r: None, action="start")
    store.update(task.id, lambda r: None, action="complete")
    thread.join(60)
    assert result["task"].status == TaskStatus.COMPLETED


def test_wait_returns_at_once_when_already_final_and_times_out_otherwise():
    Queue.create("q")
    task = Task.create("t", command=["true"]).enqueue("q")
    with pytest.raises(WaitTimeout, match=f"task {task.id} is still queued after 0.2s"):
        task.wait(timeout=0.2)
    task.abort()
    assert Task.get(task.id).wait(timeout=0).status == TaskStatus.ABORTED
    assert task.wait(statuses=["aborted"]).status == TaskStatus.ABORTED


def test_edit_definition_fields_of_a_draft():
    task = Task.create("t", command=["true"])
    task.edit(name="renamed", tags=["a", "a", "b"], gpus=2, time_limit=60, requirements=["numpy==2.0"])
    record = Task.get(task.id).data
    assert (record.name, record.tags, record.execution.gpus.count) == ("renamed", ["a", "b"], 2)
    assert record.execution.time_limit == 60 and record.script.requirements == ["numpy==2.0"]
    assert Task.get_task(project="default", name="renamed") == task
    with pytest.raises(InvalidInput, match="unknown field"):
        task.edit(colour="red")
    with pytest.raises(InvalidInput, match="time_limit"):
        task.edit(time_limit=-5)
    assert Task.get(task.id).data.execution.time_limit == 60


def _brute(made: list[Task], **filters) -> list[str]:
    """Ids matching ``filters`` newest first, by reading every record (the reference answer)."""
    from trainyard.queues.store import Query

    query = Query(**filters)
    return [t.id for t in reversed(made) if query.matches(Task.get(t.id).data)]


@pytest.mark.parametrize("walk_limit", [3, 1000])
def test_rare_matches_are_narrowed_in_redis(conn, monkeypatch, walk_limit):
    """Past the walk limit a query is narrowed with ZINTER, name lex ranges, ZSCAN MATCH: same answers, same order."""
    from trainyard.queues import keys, store

    monkeypatch.setattr(store, "_WALK_LIMIT", walk_limit)
    monkeypatch.setattr(store, "_SCAN_CHUNK", 4)
    narrowed = []
    real_narrow = store.TaskStore._narrow
    monkeypatch.setattr(store.TaskStore, "_narrow", lambda self, q: narrowed.append(q) or real_narrow(self, q))
    Queue.create("q")
    template = Task.create("tmpl", "p1", command=["true"])
    made = [template]
    for b in range(4):
        made += template.clone_many([{}] * 6, name=f"b{b}-run[{{i}}]", project="p2" if b == 1 else None)
        made += template.clone_many([{}] * 3, name=f"b{b}-q-{{i}}", queue="q", tags=["hpo"] if b == 2 else None)
    renamed = made[5].edit(name="renamed-x")
    made[3].delete()
    made.remove(made[3])
    cases = [
        {"name": "*-run[[]3]"},  # a set in the glob
        {"name": "*-q-2"},
        {"name": "renamed"},  # a plain word: substring
        {"name": "renamed-*"},  # a literal prefix: a lex range (after a rename)
        {"name": "*ed-x"},  # a literal suffix: a lex range over the reversed names
        {"name": "b[!0]-q-*", "status": "queued"},
        {"project": "p2", "status": "queued"},  # no match
        {"project": "p1", "status": "queued", "tag": "hpo"},
        {"project": "p2", "name": "*run*"},
        {"name": "nothing-*"},
    ]
    for filters in cases:
        want = _brute(made, **filters)
        assert [t.id for t in Task.list(limit=100, **filters)] == want, filters
        assert [t.id for t in Task.list(limit=2, offset=1, **filters)] == want[1:3], filters
    assert [t.id for t in Task.list(name="renamed-x")] == [renamed.id]
    assert bool(narrowed) == (walk_limit < len(made))
    # tasks stored by an older trainyard have no name index entries: the walk reads them all
    conn.zrem(keys.NAME_LEX, keys.name_member(made[-1].name, made[-1].id))
    assert [t.id for t in Task.list(name=made[-1].name, limit=100)] == [made[-1].id]


def test_name_narrowing_keeps_every_fnmatch_match(conn):
    """Property: every name fnmatch accepts has the glob's literal prefix and suffix, and is found
    by a Redis MATCH with the translated pattern."""
    import fnmatch

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from trainyard.queues.store import literal_prefix, literal_suffix, redis_glob

    text = st.text(alphabet="ab[]!*?\\^-x/", max_size=6)

    @settings(max_examples=300, deadline=None)
    @given(pattern=text, name=text)
    def check(pattern, name):
        conn.delete("z")
        conn.sadd("z", f"{name}\x00id")
        found = list(conn.sscan_iter("z", match=redis_glob(pattern) + "\x00*"))
        if fnmatch.fnmatchcase(name, pattern):
            assert found, (pattern, redis_glob(pattern), name)
            assert name.startswith(literal_prefix(pattern)) and name.endswith(literal_suffix(pattern)), pattern

    check()
