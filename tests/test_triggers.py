"""Schedules and triggers: two real trigger services on a services queue, nothing fired twice."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner
from workerproc import WorkerProcess

from trainyard import Queue, Task, TaskScheduler
from trainyard.cli import cli
from trainyard.controller import run_store, schedules, triggers
from trainyard.controller.files import load_text, registry
from trainyard.queues.store import Query, TaskStore

WATCHER = """
name: on-completed
on:
  task:
    - project: watched
      status: completed
jobs:
  react:
    steps:
      - id: seen
        run: echo "task=${{ event.id }}" >> "$TRAINYARD_OUTPUT"
    outputs:
      task: ${{ steps.seen.outputs.task }}
"""


def await_fires(conn, count: int, trigger: str, timeout: float = 90) -> list[dict]:
    """Block on the fires stream until ``count`` firings of ``trigger`` are recorded."""
    deadline = time.monotonic() + timeout
    cursor, found = "0-0", []
    while time.monotonic() < deadline:
        reply = conn.xread({triggers.FIRES: cursor}, block=1000, count=100)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                cursor = entry_id
                data = json.loads(fields[b"data"])
                if data["trigger"] == trigger:
                    found.append(data)
        if len(found) >= count:
            return found
    raise AssertionError(f"only {len(found)} firings of {trigger} before the timeout")


def test_two_trigger_services_fire_each_tick_once_and_task_events_start_pipelines(conn, tmp_path, run_cli):
    Queue.create("services")
    Queue.create("default")
    template = Task.create("nightly", "jobs", command=["true"], connection=conn)
    every_2s = TaskScheduler(conn).add_task(template.id, queue="default", cron="* * * * * */2")
    registry.register(load_text(WATCHER, "watcher.yaml"), conn)
    with (
        WorkerProcess("-q", "services", "--services-mode", "2", "--name", "svc-a"),
        WorkerProcess("-q", "services", "--services-mode", "2", "--name", "svc-b"),
        WorkerProcess("-q", "default", "--cpu-only", "--name", "cpu"),
    ):
        services = [run_cli("schedule", "service", check=True).stdout.strip() for _ in range(2)]
        for service in services:
            Task.get(service, conn).wait(timeout=60, statuses=["running"])
        fired = await_fires(conn, 4, every_2s.id)
        # a task completing in the watched project starts the pipeline, once
        watched = Task.create("watched-task", "watched", command=["true"], connection=conn).enqueue("default")
        watched.wait(timeout=60)
        started = await_fires(conn, 1, "file:default/on-completed:task0")
        run_id = started[0]["started"]
        Task.get(run_id, conn).wait(timeout=90)
        for service in services:
            Task.get(service, conn).abort("test over")
        for service in services:
            Task.get(service, conn).wait(timeout=60)
    ticks = [f["tick"] for f in fired]
    assert len(set(ticks)) == len(ticks)  # never twice
    # on the 2 s grid, in order; a tick is skipped only when both services fell behind at once (a
    # late service fires the latest tick, never a burst): possible on a loaded machine, so not asserted
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert all(gap > 0 and gap % 2.0 == 0 for gap in gaps), gaps
    assert all(f["late"] >= 0 for f in fired)  # never early
    print("tick lateness (ms):", [round(f["late"] * 1000, 1) for f in fired], "by:", [f["by"] for f in fired])
    all_fires = [f for _, f in triggers.fires(conn) if f["trigger"] == every_2s.id]
    assert len({f["tick"] for f in all_fires}) == len(all_fires)
    clones = TaskStore(conn).query(Query(tag=f"schedule:{every_2s.id}"))
    assert len(clones) == len(all_fires) and all(f["started"] in {c.id for c in clones} for f in all_fires)
    run = run_store.load(conn, run_id)
    assert run.status == "completed", run.message
    react = TaskStore(conn).get(run.state["react"].task_id)
    assert react.outputs == {"task": watched.id}
    task_fires = [f for _, f in triggers.fires(conn) if f["trigger"] == "file:default/on-completed:task0"]
    assert [f["subject"] for f in task_fires] == [watched.id]  # once, and not re-triggered by its own jobs


def test_schedule_cli_and_bad_input(conn):
    """The schedule commands, in-process (CliRunner)."""

    def cli_run(*args: str):
        return CliRunner().invoke(cli, list(args))

    template = Task.create("t", "jobs", command=["true"], connection=conn)
    Queue.create("default")
    add = ["schedule", "add", "--task", template.id, "--queue", "default"]
    added = json.loads(cli_run(*add, "--cron", "0 3 * * *", "--timezone", "Europe/Paris", "--json").output)
    listed = json.loads(cli_run("schedule", "list", "--json").output)
    assert [s["id"] for s in listed] == [added["id"]]
    assert time.gmtime(listed[0]["next"]).tm_hour in (1, 2)  # 03:00 in Paris is 01:00 or 02:00 UTC
    bad = cli_run(*add, "--cron", "every day")
    assert bad.exit_code == 1 and "not a valid cron expression" in bad.stderr
    bad_tz = cli_run(*add, "--cron", "0 * * * *", "--timezone", "Mars/Olympus")
    assert bad_tz.exit_code == 1 and "unknown time zone" in bad_tz.stderr
    no_queue = cli_run("schedule", "add", "--task", template.id, "--cron", "0 * * * *")
    assert no_queue.exit_code == 1 and "needs --queue" in no_queue.stderr
    assert cli_run("schedule", "remove", added["id"]).exit_code == 0
    assert schedules.user_schedules(conn) == []
    assert cli_run("schedule", "remove", added["id"]).exit_code == 1


def test_file_schedule_is_listed(conn, tmp_path):
    text = "name: nightly\non:\n  schedule:\n    - cron: '30 2 * * *'\n      timezone: UTC\n"
    text += "jobs:\n  a:\n    steps: [{run: 'true'}]\n"
    registry.register(load_text(text, "n.yaml"), conn)
    (item,) = schedules.all_schedules(conn)
    assert item.source == "file" and item.pipeline == "default/nightly" and item.cron == "30 2 * * *"


def test_file_schedule_and_pipeline_schedule_start_runs(conn):
    """A trigger service (here in a thread) starts runs of a file's schedule and of a user schedule."""
    import threading

    Queue.create("services")
    Queue.create("default")
    text = "name: ticking\nparams: {n: 1}\non:\n  schedule:\n    - cron: '* * * * * */1'\n      params: {n: 7}\n"
    text += "jobs:\n  a:\n    steps: [{run: 'true'}]\n"
    registry.register(load_text(text, "ticking.yaml"), conn)
    by_hand = schedules.add("* * * * * */1", pipeline="ticking", params={"n": 9}, conn=conn)
    service = triggers.TriggerService(conn, name="in-test")
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        from_file = await_fires(conn, 1, "file:default/ticking:0")[0]
        from_user = await_fires(conn, 1, by_hand.id)[0]
    finally:
        service.stop_event.set()
        thread.join(timeout=30)
    for fire, n in ((from_file, 7), (from_user, 9)):
        run = run_store.load(conn, fire["started"])
        assert run.name == "ticking" and run.parameters == {"n": n} and run.controller_queue == "services"
        assert fire["by"] == "in-test" and fire["late"] >= 0


def test_task_trigger_filters(conn):
    """Project, status, tags, queue, name and kind filters, checked on real records (events given directly)."""
    from trainyard.queues.events import Event

    Queue.create("services")
    Queue.create("default")
    text = """
name: filtered
on:
  task:
    - {project: p, status: failed, tags: [nightly], queue: gpu}
    - {kind: pipeline, name: upstream, status: completed}
jobs:
  a:
    steps: [{run: "true"}]
"""
    registry.register(load_text(text, "filtered.yaml"), conn)
    tagged = Task.create("x", "p", command=["true"], tags=["nightly", "more"], connection=conn)
    plain = Task.create("y", "p", command=["true"], connection=conn)
    service = triggers.TriggerService(conn, name="filters")
    entries = registry.entries(conn)

    def event(n: int, task_id: str, status: str, project: str = "p", queue: str = "gpu", kind: str = "status"):
        service._on_event(Event(f"{n}-0", task_id, kind, status, "running", project, queue), entries)

    event(1, tagged.id, "completed")  # wrong status
    event(2, plain.id, "failed")  # no tag
    event(3, tagged.id, "failed", queue="cpu")  # wrong queue
    event(4, tagged.id, "failed", project="q")  # wrong project
    event(5, tagged.id, "failed")  # fires
    event(5, tagged.id, "failed")  # the same event again (a second service): not twice
    up = load_text("name: upstream\njobs: {a: {steps: [{run: 'true'}]}}\n", "u.yaml")
    other = load_text("name: other\njobs: {a: {steps: [{run: 'true'}]}}\n", "o.yaml")
    up_run, other_run = registry.start(up, conn=conn), registry.start(other, conn=conn)
    event(6, other_run, "completed", project="default", queue="", kind="pipeline")  # wrong name
    event(7, up_run, "completed", project="default", queue="", kind="pipeline")  # fires
    event(8, up_run, "completed", project="default", queue="", kind="pipeline")  # same run and status: once
    fired = [f for _, f in triggers.fires(conn)]
    assert [(f["trigger"], f["subject"]) for f in fired] == [
        ("file:default/filtered:task0", tagged.id),
        ("file:default/filtered:task1", up_run),
    ]
    started = run_store.load(conn, fired[0]["started"])
    assert started.name == "filtered"
    job = started.steps["a"].template["configuration"]["trainyard.job"]
    assert job["context"]["event"]["id"] == tagged.id and job["context"]["event"]["tags"] == ["nightly", "more"]


def test_a_service_that_fell_behind_fires_the_latest_tick_once(conn):
    """Ticks missed while a service was busy are not fired as a burst: only the latest one, once."""
    Queue.create("default")
    template = Task.create("t", "jobs", command=["true"], connection=conn)
    every_s = TaskScheduler(conn).add_task(template.id, queue="default", cron="* * * * * */1")
    first, second = triggers.TriggerService(conn, name="a"), triggers.TriggerService(conn, name="b")
    start = float(int(time.time()))
    for service in (first, second):
        service.fire_due([], start)  # learns the next tick: start + 1
    assert triggers.fires(conn) == []
    later = start + 5.5  # five ticks missed: start+1 ... start+5
    first.fire_due([], later)
    second.fire_due([], later)  # the other service, just as late: nothing more
    fired = [f for _, f in triggers.fires(conn)]
    assert [(f["trigger"], f["tick"], f["by"]) for f in fired] == [(every_s.id, start + 5, "a")]
