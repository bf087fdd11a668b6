"""Hostile input: payloads pushed straight onto RQ queues, corrupted records, and parameters or
pipeline inputs written to inject shell commands. All are refused or passed on as plain data."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
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


# -- the operator's hostile cases (issue 15): each ends in one clear line and an unchanged Redis ----


def _redis_state(conn) -> dict:
    """Every key with its serialised value: equal before and after means nothing was written."""
    return {key: conn.dump(key) for key in conn.scan_iter(count=1000)}


def _one_line(proc, *fragments: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _yaml_bomb(levels: int = 9) -> str:
    """A few hundred bytes of nested aliases that expand to 9**levels values."""
    text = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    previous = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text + f"name: bomb\njobs: *{previous}\n"


def _merge_bomb(levels: int = 12) -> str:
    """The same with ``<<`` merges, which copy every merged pair."""
    text = "a: &a {x: 1, y: 2}\n"
    previous = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        text += f"{name}: &{name}\n  <<: [" + ", ".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text + "name: bomb\njobs: {}\n"


def test_yaml_bombs_are_refused_with_one_line(run_cli, conn, tmp_path):
    before = _redis_state(conn)
    for name, text in [
        ("alias", _yaml_bomb()),
        ("merge", _merge_bomb()),
        ("self", "name: x\njobs: &j [1, *j]\n"),
        ("deep", "name: x\njobs: " + "[" * 5000 + "]" * 5000 + "\n"),
    ]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        assert len(text) < 11_000
        proc = run_cli("pipeline", "validate", str(path))
        _one_line(proc, f"{path}", "too ")
    assert _redis_state(conn) == before


def test_validating_a_pipeline_file_needs_an_admin_token_and_bombs_cost_nothing(conn):
    from fastapi.testclient import TestClient

    from trainyard.web import auth, create_app

    read, _ = auth.create_token(conn, "reader", "read")
    admin, _ = auth.create_token(conn, "writer", "admin")
    before = _redis_state(conn)
    with TestClient(create_app(os.environ["TRAINYARD_REDIS_URL"])) as client:
        body = {"text": _yaml_bomb()}
        refused = client.post("/api/pipelines/validate", headers={"Authorization": f"Bearer {read}"}, json=body)
        assert refused.status_code == 403
        checked = client.post("/api/pipelines/validate", headers={"Authorization": f"Bearer {admin}"}, json=body)
        assert checked.status_code == 200
        errors = checked.json()["errors"]
        assert len(errors) == 1 and errors[0]["message"].startswith("too big: more than 100,000 values")
        assert client.get("/api/overview", headers={"Authorization": f"Bearer {read}"}).status_code == 200
    assert _redis_state(conn) == before


NASTY_NAME = "\x1b[31mRED\x1b[0m\x1b]0;title\x07\nline2\u202e"


def test_control_characters_never_reach_the_terminal(run_cli, conn):
    task_id = run_cli("task", "create", "--name", NASTY_NAME, "--tag", "t\x1b[2J", "--", "true", check=True).stdout
    task_id = task_id.strip()
    for args in (["task", "list"], ["task", "show", task_id]):
        shown = run_cli(*args, check=True).stdout
        assert not set(shown) & {"\x1b", "\x07", "\u202e"}, repr(shown)
        assert "\\e[31mRED\\e[0m\\e]0;title\\x07\\nline2\\u202e" in shown
        assert not [line for line in shown.splitlines() if line.lstrip("│ ").startswith("line2")]  # no split row
    as_json = json.loads(run_cli("task", "show", task_id, "--json", check=True).stdout)
    assert as_json["name"] == NASTY_NAME  # scripts get the value itself
    missing = run_cli("task", "show", "nope\x1b]0;x\x07")
    assert "]0;x" in _one_line(missing) and not set(missing.stderr) & {"\x1b", "\x07"}


def test_a_binary_script_is_refused_with_one_line(run_cli, conn, tmp_path):
    binary = tmp_path / "tool"
    binary.write_bytes(Path("/bin/true").read_bytes() if Path("/bin/true").is_file() else bytes(range(256)))
    before = _redis_state(conn)
    proc = run_cli("task", "create", "--name", "bin", "--script", str(binary))
    _one_line(proc, "is not a text file")
    assert _redis_state(conn) == before


def test_bad_redis_urls_give_one_line_and_never_a_password(run_cli, conn):
    before = _redis_state(conn)
    for url, problem in [
        ("redis://u:S3cretPw@127.0.0.1:notaport/0", "port is not a number"),
        ("redis//user:S3cretPw@127.0.0.1:6379/0", "must start with redis://"),
        ("redis://user:S3cret/Pw:42@127.0.0.1:6379/0", "port is not a number"),
        ("redis://user:S3cret@Pw@127.0.0.1:1/0", "cannot reach Redis"),
    ]:
        proc = run_cli("status", env={"TRAINYARD_REDIS_URL": url})
        line = _one_line(proc, problem)
        assert "S3cret" not in proc.stderr + proc.stdout and "Pw" not in line, line
    assert _redis_state(conn) == before


def test_one_set_of_limits_for_every_entry_point(run_cli, conn):
    """Names, projects and tags are capped by the record itself: the CLI, the Python API and the web
    API refuse the same oversized values, and nothing is written."""
    from fastapi.testclient import TestClient

    from trainyard.queues.errors import InvalidInput
    from trainyard.queues.record import NAME_MAX
    from trainyard.web import auth, create_app

    admin, _ = auth.create_token(conn, "writer", "admin")
    big = "x" * 100_000
    before = _redis_state(conn)
    for args in (["--name", big], ["--name", "n", "--project", big], ["--name", "n", "--tag", big]):
        _one_line(run_cli("task", "create", *args, "--", "true"), f"at most {NAME_MAX} characters")
    for kwargs in ({"name": "x" * 10_000_000}, {"name": "n", "project": big}, {"name": "n", "tags": [big]}):
        with pytest.raises(InvalidInput, match=f"at most {NAME_MAX} characters"):
            Task.create(command=["true"], **kwargs)
    with TestClient(create_app(os.environ["TRAINYARD_REDIS_URL"])) as client:
        headers = {"Authorization": f"Bearer {admin}"}
        for body in ({"name": big}, {"name": "n", "tags": [big]}):
            made = client.post("/api/tasks", headers=headers, json={"command": ["true"], **body})
            assert made.status_code == 422, made.text
    assert _redis_state(conn) == before
    task = Task.create("fine", command=["true"])
    with pytest.raises(InvalidInput, match=f"at most {NAME_MAX} characters"):
        task.add_tags(big)
    assert Task.get(task.id).tags == []


def test_the_cli_prints_only_through_the_escaping_helpers():
    """Every human line goes through trainyard.cli.output (say, fail, table), which escapes control
    characters; a new command that printed directly would bring raw escapes back."""
    cli_dir = Path(__file__).resolve().parent.parent / "trainyard" / "cli"
    direct = [
        f"{path.name}:{number}"
        for path in sorted(cli_dir.glob("*.py"))
        if path.name != "output.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "click.echo(" in line or "click.secho(" in line or line.lstrip().startswith("print(")
    ]
    assert direct == []
