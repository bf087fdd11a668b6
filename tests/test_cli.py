"""The real `trainyard` command: happy paths, JSON output, and one clear line for each bad input."""

from __future__ import annotations

import json

import pytest

from trainyard import Queue, Task, TaskStatus
from trainyard.queues import keys


def one_error_line(proc, *fragments: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_create_enqueue_show_list_wait_flow(run_cli):
    run_cli("queue", "create", "gpu", check=True)
    task_id = run_cli(
        "task",
        "create",
        "--name",
        "hello",
        "--project",
        "demo",
        "-p",
        "Args/lr=0.1",
        "--tag",
        "x",
        "--",
        "python",
        "-c",
        "print(1)",
        check=True,
    ).stdout.strip()
    assert run_cli("task", "enqueue", task_id, "-q", "gpu", "--priority", "2", check=True).returncode == 0
    shown = json.loads(run_cli("task", "show", task_id, "--json", check=True).stdout)
    assert shown["status"] == "queued" and shown["execution"]["queue"] == "gpu"
    assert shown["script"]["command"] == ["python", "-c", "print(1)"]
    listed = json.loads(run_cli("task", "list", "--project", "demo", "--json", check=True).stdout)
    assert [t["id"] for t in listed] == [task_id]
    queue = json.loads(run_cli("queue", "show", "gpu", "--json", check=True).stdout)
    assert queue["length"] == 1 and queue["tasks"][0] == {
        "position": 0,
        "id": task_id,
        "priority": 2,
        "name": "hello",
        "project": "demo",
    }
    table = run_cli("task", "list", check=True).stdout
    assert task_id in table and "queued" in table
    assert "hello" in run_cli("queue", "show", "gpu", check=True).stdout
    run_cli("task", "abort", task_id, check=True)
    waited = run_cli("task", "wait", task_id, "--timeout", "5")
    assert waited.returncode == 1 and waited.stdout.strip() == f"{task_id} aborted"
    run_cli("task", "reset", task_id, check=True)
    assert Task.get(task_id).status == TaskStatus.DRAFT


def test_clone_with_queue_and_dequeue(run_cli):
    Queue.create("q")
    base = Task.create("base", command=["true"], parameters={"n": 1})
    clone_id = run_cli("task", "clone", base.id, "--name", "c", "-p", "n=2", "-q", "q", check=True).stdout.strip()
    assert Queue("q").task_ids() == [clone_id]
    run_cli("task", "dequeue", clone_id, check=True)
    assert Queue("q").task_ids() == [] and Task.get(clone_id).get_parameter("n") == 2


def test_queue_move_and_delete(run_cli):
    Queue.create("q")
    tasks = [Task.create(f"t{i}", command=["true"]).enqueue("q") for i in range(3)]
    out = run_cli("queue", "move", tasks[2].id, "--top", check=True).stdout
    assert "position 0" in out
    run_cli("queue", "move", tasks[0].id, "--position", "2", check=True)
    assert Queue("q").task_ids() == [tasks[2].id, tasks[1].id, tasks[0].id]
    listed = json.loads(run_cli("queue", "list", "--json", check=True).stdout)
    assert listed[0]["name"] == "q" and listed[0]["length"] == 3
    refused = run_cli("queue", "delete", "q")
    assert refused.returncode == 1
    one_error_line(refused, "still holds 3 task(s)")
    run_cli("queue", "delete", "q", "--force", check=True)
    assert all(Task.get(t.id).status == TaskStatus.DRAFT for t in tasks)


def test_unknown_task_id(run_cli):
    proc = run_cli("task", "show", "0123456789abcdef")
    assert proc.returncode == 1
    one_error_line(proc, "no task with id '0123456789abcdef'")


def test_unknown_queue_writes_nothing(run_cli, conn):
    task = Task.create("t", command=["true"])
    proc = run_cli("task", "enqueue", task.id, "-q", "nope")
    assert proc.returncode == 1
    one_error_line(proc, "no queue named 'nope'")
    assert Task.get(task.id).status == TaskStatus.DRAFT
    # create --queue with an unknown queue leaves no draft behind either
    proc = run_cli("task", "create", "--name", "x", "-q", "nope", "--", "true")
    assert proc.returncode == 1
    one_error_line(proc, "no queue named 'nope'")
    assert [t.id for t in Task.list()] == [task.id]
    assert not conn.exists(keys.rq_queue("nope"))


def test_illegal_transition(run_cli):
    Queue.create("q")
    task = Task.create("t", command=["true"]).enqueue("q")
    proc = run_cli("task", "enqueue", task.id, "-q", "q")
    assert proc.returncode == 1
    one_error_line(proc, f"cannot enqueue task {task.id}: it is queued (allowed from: draft)")
    proc = run_cli("task", "set", task.id, "a=1")
    assert proc.returncode == 1
    one_error_line(proc, "it is queued")
    assert Queue("q").task_ids() == [task.id]


@pytest.mark.parametrize("bad", ["noequals", "=1", "1x/y=2", "x=NaN"])
def test_malformed_parameter_writes_nothing(run_cli, bad):
    proc = run_cli("task", "create", "--name", "t", "-p", bad, "--", "true")
    assert proc.returncode == 1
    one_error_line(proc, "parameter")
    assert Task.list() == []
    task = Task.create("t", command=["true"], parameters={"a": 1})
    proc = run_cli("task", "set", task.id, "b=2", bad)
    assert proc.returncode == 1
    assert Task.get(task.id).get_parameters() == {"General/a": 1}


def test_invalid_field_value_is_one_line(run_cli):
    proc = run_cli("task", "create", "--name", " ", "--", "true")
    assert proc.returncode == 1
    one_error_line(proc, "name")


def test_redis_down_is_one_line_with_address_and_cause(run_cli, redis_server):
    from redis_server import free_port

    url = f"redis://:pw@127.0.0.1:{free_port()}/0"
    for args in (("task", "list"), ("queue", "list"), ("status",), ("task", "create", "--name", "x", "--", "true")):
        proc = run_cli(*args, env={"TRAINYARD_REDIS_URL": url})
        assert proc.returncode == 3, args
        line = one_error_line(proc, "cannot reach Redis at redis://:***@127.0.0.1:", "connection refused")
        assert "pw" not in line


def test_wrong_password_names_the_cause(run_cli, redis_server):
    url = redis_server.url.replace("test-secret-pw", "wrong")
    proc = run_cli("task", "list", env={"TRAINYARD_REDIS_URL": url})
    assert proc.returncode == 3
    one_error_line(proc, "authentication failed")


def test_wait_timeout_exit_code(run_cli):
    Queue.create("q")
    task = Task.create("t", command=["true"]).enqueue("q")
    proc = run_cli("task", "wait", task.id, "--timeout", "0.3")
    assert proc.returncode == 4
    one_error_line(proc, "still queued after 0.3s")
