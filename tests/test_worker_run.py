"""A real worker process runs real tasks end to end against the test Redis."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest
from workerproc import WorkerProcess, log_text, wait_for_log, wait_status

from trainyard import Queue, Task, TaskStatus
from trainyard.queues import logs

TRAIN = textwrap.dedent(
    """
    import argparse, json, os, sys, time
    from pathlib import Path
    from trainyard import current_task

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
    task = current_task()
    config = task.connect({"batch": 8, "optimizer": "sgd"})
    print(f"args lr={args.lr!r} epochs={args.epochs!r} amp={args.amp}", flush=True)
    print(f"config {json.dumps(config, sort_keys=True)}", flush=True)
    print("waiting for the go file", flush=True)
    go = Path(os.environ["GO_FILE"])
    while not go.exists():
        time.sleep(0.01)
    for step in range(3):
        task.log_metric("loss", "train", 1.0 / (step + 1), step)
    Path("model.bin").write_bytes(b"weights")
    task.upload_artifact("model", "model.bin", metadata={"format": "raw"})
    task.upload_artifact("summary", {"best": 0.33})
    task.set_output("accuracy", 0.93)
    task.set_output("classes", ["cat", "dog"])
    print("stderr line", file=sys.stderr)
    print("done")
    """
)


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    return folder


def test_create_enqueue_run_stream_report_complete(project, conn, tmp_path):
    Queue.create("cpu")
    go = tmp_path / "go"
    task = Task.create(
        "train",
        script=project / "train.py",
        detect_repository=False,
        parameters={"Args/lr": 0.5, "Args/epochs": 2, "Args/amp": True, "General/batch": 64},
        env={"GO_FILE": str(go)},
    ).enqueue("cpu")
    with WorkerProcess("--queue", "cpu", "--cpu-only"):
        # a live log line, seen while the task is still running
        wait_for_log(conn, task.id, "waiting for the go file")
        assert Task.get(task.id).status == TaskStatus.RUNNING
        text = log_text(conn, task.id)
        assert "args lr=0.5 epochs=2 amp=True" in text
        assert 'config {"batch": 64, "optimizer": "sgd"}' in text  # overridden, typed; default kept
        go.touch()
        done = wait_status(task)
    record = done.data
    assert record.status == TaskStatus.COMPLETED, (record.runtime, log_text(conn, task.id))
    assert record.runtime.exit_code == 0 and record.runtime.attempt == 1
    assert record.outputs == {"accuracy": 0.93, "classes": ["cat", "dog"]}
    loss = record.metrics["loss"]["train"]
    assert (loss.last, loss.min, loss.max, loss.step, loss.count) == (
        pytest.approx(1 / 3),
        pytest.approx(1 / 3),
        1.0,
        2,
        3,
    )
    assert [p["value"] for p in logs.metric_points(conn, task.id)] == [1.0, 0.5, pytest.approx(1 / 3)]
    model = record.artifacts["model"]
    assert Path(model.uri).read_bytes() == b"weights"
    assert model.sha256 == hashlib.sha256(b"weights").hexdigest() and model.size == 7
    assert model.metadata == {"format": "raw"}
    assert json.loads(Path(record.artifacts["summary"].uri).read_text()) == {"best": 0.33}
    assert record.parameters["General/optimizer"] == "sgd"  # a connected default is recorded
    full = log_text(conn, task.id)
    assert "stderr line" in full and "done" in full
    assert "stderr line" in Path(record.runtime.log_uri).read_text()  # the whole log is kept
    assert record.runtime.attempts[0].outcome == "completed"


def test_failing_task_records_exit_code_and_last_lines(conn):
    Queue.create("cpu")
    task = Task.create("boom", command=["python", "-c", "print('about to fail'); raise SystemExit(3)"]).enqueue("cpu")
    with WorkerProcess("--queue", "cpu", "--cpu-only", "--burst") as worker:
        assert worker.wait() == 0
    record = Task.get(task.id).data
    assert record.status == TaskStatus.FAILED
    assert record.runtime.exit_code == 3 and record.runtime.error == "exit code 3"
    assert "about to fail" in record.runtime.log_tail


def test_a_task_that_asks_to_end_failed_goes_on_running_and_ends_failed_with_its_message(conn):
    """``current_task().fail_at_exit(message)``: the process carries on and exits 0, the task ends
    failed with the message (how a ClearML pipeline controller fails its own task)."""
    Queue.create("cpu")
    code = (
        "from trainyard import current_task\n"
        "current_task().fail_at_exit('step two broke')\n"
        "print('still running after asking', flush=True)\n"
    )
    task = Task.create("fails late", command=["python", "-c", code]).enqueue("cpu")
    with WorkerProcess("--queue", "cpu", "--cpu-only", "--burst") as worker:
        assert worker.wait() == 0
    record = Task.get(task.id).data
    assert (record.status, record.runtime.exit_code) == (TaskStatus.FAILED, 0)
    assert record.runtime.error == "step two broke"
    assert "still running after asking" in "\n".join(Task.get(task.id).get_log())


def test_a_failed_task_s_error_is_its_exception_line(conn, run_cli):
    """Not ``exit code 1``: the last meaningful line, wherever the error is shown (issue 14, 2d)."""
    Queue.create("cpu")
    task = Task.create("crash", command=["python", "-c", "print('working'); 1 / 0"]).enqueue("cpu")
    with WorkerProcess("--queue", "cpu", "--cpu-only", "--burst") as worker:
        assert worker.wait() == 0
    record = Task.get(task.id).data
    assert (record.status, record.runtime.exit_code) == (TaskStatus.FAILED, 1)
    assert record.runtime.error == "ZeroDivisionError: division by zero"
    assert "ZeroDivisionError: division by zero" in run_cli("task", "show", task.id, check=True).stdout
    # framing (issue 14, 2g): the worker's starting line ends before the task's first output
    stored = Path(record.runtime.log_uri.removeprefix("file://")).read_text().splitlines()
    starting = [line for line in stored if line.startswith("[trainyard] starting: ")]
    assert len(starting) == 1 and starting[0].endswith("1 / 0"), stored
    assert "working" in stored and "ZeroDivisionError: division by zero" in stored


def test_standalone_script_and_import_crash_then_worker_carries_on(tmp_path, conn):
    Queue.create("cpu")
    crash = tmp_path / "crash.py"
    crash.write_text("import no_such_module_xyz\n")
    bad = Task.create("crash", script=crash).enqueue("cpu")
    missing = Task.create("missing", command=["python", "-c", "pass"])
    missing.edit(command=None, entry_point="nope.py")
    missing.enqueue("cpu")
    good = Task.create("good", command=["python", "-c", "print('fine')"]).enqueue("cpu")
    with WorkerProcess("--queue", "cpu", "--cpu-only", "--burst") as worker:
        assert worker.wait() == 0
    crashed = Task.get(bad.id).data
    assert crashed.status == TaskStatus.FAILED and crashed.runtime.exit_code == 1
    assert any("ModuleNotFoundError" in line for line in crashed.runtime.log_tail)
    gone = Task.get(missing.id).data
    assert gone.status == TaskStatus.FAILED and "entry point not found: nope.py" in gone.runtime.error
    assert Task.get(good.id).status == TaskStatus.COMPLETED


def test_time_limit_fails_the_task(conn):
    Queue.create("cpu")
    task = Task.create("slow", command=["python", "-c", "import time; time.sleep(120)"], time_limit=0.5)
    task.enqueue("cpu")
    with WorkerProcess("--queue", "cpu", "--cpu-only", "--burst", "--grace", "1") as worker:
        assert worker.wait() == 0
    record = Task.get(task.id).data
    assert record.status == TaskStatus.FAILED and record.runtime.error == "time limit of 0.5s exceeded"


def test_logs_follow_cli_streams_until_the_end(run_cli, conn, tmp_path):
    Queue.create("cpu")
    task = Task.create("chatty", command=["python", "-c", "for i in range(5): print('line', i)"]).enqueue("cpu")
    with WorkerProcess("--queue", "cpu", "--cpu-only"):
        proc = run_cli("task", "logs", task.id, "-f", check=True)
    assert [f"line {i}" for i in range(5)] == [ln for ln in proc.stdout.splitlines() if ln.startswith("line")]
    assert Task.get(task.id).status == TaskStatus.COMPLETED


def test_artifact_store_accepts_an_fsspec_url(tmp_path):
    """Any fsspec URL works as the store; memory:// stands in for s3:// or gs:// here."""
    import fsspec

    from trainyard.worker.artifacts import ArtifactStore

    source = tmp_path / "weights.bin"
    source.write_bytes(b"\x00\x01")
    artifact = ArtifactStore("memory://bucket/runs").put("t1", "model", source)
    assert artifact.uri == "memory://bucket/runs/t1/model/weights.bin"
    with fsspec.open(artifact.uri, "rb") as handle:
        assert handle.read() == b"\x00\x01"
    assert artifact.size == 2
