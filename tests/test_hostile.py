"""Hostile input: payloads pushed straight onto RQ queues, corrupted records, and parameters or
pipeline inputs written to inject shell commands. All are refused or passed on as plain data."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

from rq import Queue as RqQueue
from workerproc import WorkerProcess, log_text

from trainyard import Pipeline, Queue, Task, TaskStatus
from trainyard.queues import keys

INJECTIONS = [
    "$(touch {m}/dollar)",
    "`touch {m}/backtick`",
    "x; touch {m}/semicolon",
    "x && touch {m}/and",
    "x | touch {m}/pipe",
    "'; touch {m}/quote; '",
    "--help\ntouch {m}/newline",
]

ECHO_ARGV = textwrap.dedent(
    """
    import json, os, sys
    from trainyard import current_task
    task = current_task()
    with open(os.environ["ARGV_FILE"], "a") as out:
        out.write(json.dumps({"argv": sys.argv[1:], "param": task.get_parameter("Args/name")}) + "\\n")
    task.set_output("name", task.get_parameter("Args/name"))
    """
)


def test_rq_pickle_jobs_and_corrupted_records_are_refused(conn, tmp_path):
    """A job enqueued with RQ's own (pickle) API would run os.system on an RQ worker; trainyard's
    workers drop it unread. A task record that is no JSON is set aside, not retried forever."""
    marker = tmp_path / "pwned"
    Queue.create("cpu")
    RqQueue("cpu", connection=conn).enqueue(os.system, f"touch {marker}")
    corrupt = Task.create("corrupt", command=["true"]).enqueue("cpu")
    conn.set(keys.task(corrupt.id), b"\x80\x04\x95garbage")
    good = Task.create("good", command=[sys.executable, "-c", "print('fine')"]).enqueue("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=60) == 0, worker.output()
        output = worker.output()
    assert Task.get(good.id).status == TaskStatus.COMPLETED
    assert not marker.exists()
    assert conn.llen(keys.rq_queue("cpu")) == 0
    assert "is not a trainyard task" in output and "its task record cannot be read" in output
    assert conn.get(keys.task(corrupt.id)) == b"\x80\x04\x95garbage"  # kept for a person to look at


def test_parameters_never_reach_a_shell(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    argv_file = tmp_path / "argv.jsonl"
    script = tmp_path / "echo_argv.py"
    script.write_text(ECHO_ARGV)
    Queue.create("cpu")
    values = [text.format(m=markers) for text in INJECTIONS]
    tasks = [
        Task.create(
            f"inject-{i}",
            script=script,
            detect_repository=False,
            parameters={"Args/name": value},
            env={"ARGV_FILE": str(argv_file)},
        ).enqueue("cpu")
        for i, value in enumerate(values)
    ]
    with WorkerProcess("-q", "cpu", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=120) == 0, worker.output()
    assert [Task.get(t.id).status for t in tasks] == [TaskStatus.COMPLETED] * len(tasks)
    seen = [json.loads(line) for line in argv_file.read_text().splitlines()]
    assert sorted(s["param"] for s in seen) == sorted(values)
    assert sorted(tuple(s["argv"]) for s in seen) == sorted(("--name", v) for v in values)  # one argv item each
    assert list(markers.iterdir()) == []


def test_pipeline_inputs_never_reach_a_shell(tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    argv_file = tmp_path / "argv.jsonl"
    monkeypatch.setenv("ARGV_FILE", str(argv_file))  # the in-process worker's environment
    script = tmp_path / "echo_argv.py"
    script.write_text(ECHO_ARGV)
    Queue.create("cpu")
    template = Task.create("echo", "tpl", script=script, detect_repository=False, parameters={"Args/name": ""})
    hostile = INJECTIONS[0].format(m=markers) + " " + INJECTIONS[2].format(m=markers)
    pipe = Pipeline("inject", default_queue="cpu")
    pipe.add_parameter("name", "")
    pipe.add_step("first", base_task=template, parameter_override={"Args/name": "${pipeline.name}"})
    pipe.add_step("second", base_task=template, parameter_override={"Args/name": "${first.outputs.name}"})
    run = pipe.start_locally(run_steps_locally=True, name=hostile)
    assert run.status == "completed", run.message
    seen = [json.loads(line) for line in argv_file.read_text().splitlines()]
    assert [s["argv"] for s in seen] == [["--name", hostile]] * 2
    assert list(markers.iterdir()) == []


ESCAPES = textwrap.dedent(
    """
    import json, os
    run = os.environ["TRAINYARD_RUN_DIR"]
    os.makedirs(os.path.join(run, "artifacts", "link"))
    os.symlink("/etc/passwd", os.path.join(run, "artifacts", "link", "passwd"))
    os.makedirs(os.path.join(run, "artifacts", "ok"))
    with open(os.path.join(run, "artifacts", "ok", "fine.txt"), "w") as out:
        out.write("fine")
    events = [
        {"kind": "artifact", "name": "dotdot", "path": "artifacts/dotdot/../../../../etc/passwd"},
        {"kind": "artifact", "name": "abs", "path": "/etc/passwd"},
        {"kind": "artifact", "name": "../up", "path": "artifacts/../up/x"},
        {"kind": "artifact", "name": "link", "path": "artifacts/link/passwd"},
        {"kind": "artifact", "name": "ok", "path": "artifacts/ok/fine.txt"},
    ]
    with open(os.path.join(run, "events.jsonl"), "a") as out:
        for event in events:
            out.write(json.dumps(event) + "\\n")
    """
)


def test_artifact_paths_cannot_escape(conn, tmp_path):
    script = tmp_path / "escape.py"
    script.write_text(ESCAPES)
    Queue.create("cpu")
    task = Task.create("escape", script=script, detect_repository=False).enqueue("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=60) == 0, worker.output()
    record = Task.get(task.id).data
    assert record.status == TaskStatus.COMPLETED
    assert list(record.artifacts) == ["ok"]
    text = log_text(conn, task.id)
    assert text.count("ignored a bad line in events.jsonl") == 3  # dotdot, absolute, bad name
    assert "artifact 'link' refused" in text and "symlink" in text
    store = tmp_path / "home" / "artifacts"
    assert Path(record.artifacts["ok"].uri).read_text() == "fine" and store in Path(record.artifacts["ok"].uri).parents
    passwd = Path("/etc/passwd").read_bytes()
    assert not [p for p in store.rglob("*") if p.is_file() and p.read_bytes() == passwd]
