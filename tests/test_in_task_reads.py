"""Reading other tasks from inside a task (issue 14, 2b): ``Task.get``, ``Task.get_task`` and
``Task.list`` in an ordinary task are answered by its worker through the run folder; the task gets
no Redis credentials, never starts an embedded Redis, and what needs Redis is refused in one line."""

from __future__ import annotations

import json
import sys

from workerproc import WorkerProcess, log_text, wait_status

from trainyard import Queue, Task, TaskStatus

READER = """
import json, os, sys
from trainyard import Task, TrainyardError
assert "TRAINYARD_REDIS_URL" not in os.environ
target = Task.get_task(task_id=sys.argv[1])
by_name = Task.get_task(project="reads", name="source")
listed = Task.list(project="reads", status="completed")
print("READ", json.dumps({
    "name": target.name, "status": target.status.value, "params": target.get_parameters(),
    "outputs": target.outputs, "by_name": by_name.id, "listed": [t.id for t in listed],
    "refreshed": target.refresh().id,
}), flush=True)
for attempt in (lambda: Task.get("0000000000000000"), lambda: Task.create("x", command=["true"]),
                lambda: target.enqueue("reads")):
    try:
        attempt()
    except TrainyardError as exc:
        print("REFUSED", type(exc).__name__, str(exc), flush=True)
"""


def test_a_task_reads_other_tasks_through_its_worker(conn, tmp_path):
    Queue.create("reads")
    source = Task.create(
        "source", project="reads", command=[sys.executable, "-c", "print('hi')"], parameters={"lr": 0.5}
    )
    source.enqueue("reads")
    task_home = tmp_path / "task-home"
    reader = Task.create(
        "reader",
        project="reads",
        command=[sys.executable, "-c", READER, source.id],
        env={"TRAINYARD_HOME": str(task_home)},  # where an embedded Redis would have started
    )
    with WorkerProcess("-q", "reads", "--cpu-only"):
        wait_status(source, TaskStatus.COMPLETED)
        reader.enqueue("reads")
        done = wait_status(reader, TaskStatus.COMPLETED, TaskStatus.FAILED)
    lines = log_text(conn, reader.id).splitlines()
    assert done.status == TaskStatus.COMPLETED, lines[-15:]
    read = json.loads(next(line for line in lines if line.startswith("READ "))[5:])
    assert read == {
        "name": "source",
        "status": "completed",
        "params": {"General/lr": 0.5},
        "outputs": {},
        "by_name": source.id,
        "listed": [source.id],
        "refreshed": source.id,
    }
    refused = [line for line in lines if line.startswith("REFUSED ")]
    assert refused[0] == "REFUSED TaskNotFound no task with id '0000000000000000'"
    assert refused[1].startswith("REFUSED RedisUnavailable no Redis inside a task (its worker keeps the credentials)")
    assert refused[2] == refused[1]
    assert len(refused) == 3
    assert not (task_home / "redis").exists()  # no embedded Redis was started for the task


STANDALONE = """
import sys
import trainyard
assert not hasattr(trainyard, "connect"), "this environment has trainyard itself"
from trainyard import Task, QueryRefused
source = Task.get_task(project="reads", name="source")
print("READ", source.id, source.status, source.get_parameter("lr"), [t.id for t in Task.list(project="reads")])
try:
    Task.get("0000000000000000")
except QueryRefused as exc:
    print("REFUSED", exc.reason, exc)
"""


def test_a_task_without_trainyard_installed_reads_through_the_stand_in(conn):
    """A venv without trainyard gets the stand-in package: its read-only ``Task`` asks the worker too."""
    Queue.create("reads")
    source = Task.create("source", project="reads", command=["true"], parameters={"lr": 0.5})
    source.enqueue("reads")
    reader = Task.create("reader", project="reads", command=["python", "-c", STANDALONE], mode="venv")
    with WorkerProcess("-q", "reads", "--cpu-only"):
        wait_status(source, TaskStatus.COMPLETED)
        reader.enqueue("reads")
        done = wait_status(reader, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=240)
    lines = log_text(conn, reader.id).splitlines()
    assert done.status == TaskStatus.COMPLETED, lines[-15:]
    assert f"READ {source.id} completed 0.5 {[reader.id, source.id]}" in lines, "\n".join(lines)
    assert "REFUSED not_found no task with id '0000000000000000'" in lines
