"""The alerts service against a real HTTP receiver on loopback (Apprise's JSON webhook)."""

from __future__ import annotations

import json
import re
import signal

import pytest
from receiver import Receiver
from workerproc import ServiceProcess, WorkerProcess, wait_service, wait_status, wait_worker_registered

from trainyard import Queue, Task, TaskStatus
from trainyard.queues import alertstore, keys
from trainyard.queues.alertstore import AlertRule
from trainyard.queues.dispatch import Dispatcher

SERVICE = "alerts.service"
FAILS = ["python", "-c", "import sys; print('step 1 ok'); print('loss exploded', flush=True); sys.exit(3)"]


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def _rule(conn, receiver, **fields) -> AlertRule:
    return alertstore.add_rule(conn, AlertRule(notify=[receiver.url], **fields))


def _fail_directly(conn, queue: str, count: int) -> list[str]:
    """``count`` tasks taken and failed through the worker-side calls (real status events, fast)."""
    dispatcher = Dispatcher(conn, "burster", "h")
    ids = []
    for i in range(count):
        task = Task.create(f"burst-{i}", command=["false"]).enqueue(queue)
        claimed = dispatcher.claim_head(queue, task.id)
        dispatcher.start(claimed, [])
        dispatcher.finish(task.id, "failed", exit_code=1, error=f"exit code 1 (burst {i})")
        ids.append(task.id)
    return ids


def _mentions(messages: list[dict], task_id: str) -> int:
    return sum(1 for m in messages if re.search(rf"\b{task_id}\b", m["title"] + m["message"]))


def test_a_failing_task_gives_one_message_with_its_error_and_log(conn, receiver, monkeypatch):
    monkeypatch.setenv("TRAINYARD_WEB_URL", "http://yard.example:8080")
    Queue.create("cpu")
    _rule(conn, receiver, on="failed", queue="cpu", prefix="@here")
    with ServiceProcess(SERVICE) as service:
        wait_service(conn, "alerts")
        failing = Task.create("train-2", project="vision", command=FAILS).enqueue("cpu")
        with WorkerProcess("-q", "cpu", "--cpu-only", "--burst") as worker:
            assert worker.wait() == 0
        assert wait_status(failing).status == TaskStatus.FAILED
        messages = receiver.wait_for(lambda m: m)
        assert service.stop() == 0
    assert len(messages) == 1, messages
    msg = messages[0]
    assert msg["title"] == "@here trainyard: task 'train-2' failed" and msg["type"] == "failure"
    assert failing.id in msg["message"] and "error: exit code 3" in msg["message"]
    assert f"http://yard.example:8080/#/tasks/{failing.id}" in msg["message"]
    assert "loss exploded" in msg["message"]
    sent = alertstore.history(conn)
    assert sent[0]["ok"] and sent[0]["subjects"] == 1


def test_a_lost_worker_and_a_stalled_queue_each_give_one_message(conn, receiver):
    Queue.create("cpu")
    Queue.create("gpu")
    _rule(conn, receiver, on="worker_lost", name="lost")
    _rule(conn, receiver, on="queue_wait", queue="gpu", minutes=0.01, name="waits")
    with ServiceProcess(SERVICE):
        wait_service(conn, "alerts")
        worker = WorkerProcess("-q", "cpu", "--cpu-only", "--name", "doomed")
        wait_worker_registered(conn, "doomed")
        worker.signal(signal.SIGKILL)
        worker.wait()
        waiting = Task.create("waits", command=["true"]).enqueue("gpu")
        messages = receiver.wait_for(lambda m: len(m) >= 2)
        with WorkerProcess("-q", "cpu", "--cpu-only", "--name", "clean") as clean:  # a clean exit is no loss
            wait_worker_registered(conn, "clean")
            clean.signal(signal.SIGTERM)
            assert clean.wait() == 0
        _rule(conn, receiver, on="completed", name="marker")  # a later message: nothing else came before it
        with WorkerProcess("-q", "gpu", "--cpu-only", "--burst") as runner:
            assert runner.wait() == 0
        messages = receiver.wait_for(lambda m: any("'waits' completed" in x["title"] for x in m))
    titles = sorted(m["title"] for m in messages)
    assert titles == [
        "trainyard: queue 'gpu' stalled",
        "trainyard: task 'waits' completed",
        "trainyard: worker 'doomed' lost",
    ], titles
    assert waiting.id in next(m["message"] for m in messages if "stalled" in m["title"])


def test_a_burst_of_1000_failures_with_two_services_one_killed_loses_none_and_repeats_none(conn, receiver):
    Queue.create("cpu")
    _rule(conn, receiver, on="failed", burst=5, window_s=2.0)
    first = ServiceProcess(SERVICE)
    second = ServiceProcess(SERVICE)
    try:
        wait_service(conn, "alerts", count=2)
        ids = _fail_directly(conn, "cpu", 300)
        receiver.wait_for(lambda m: m)  # the services are sending
        first.kill()  # mid-burst: kill -9, its pending work is taken over
        ids += _fail_directly(conn, "cpu", 700)
        messages = receiver.wait_for(lambda m: sum(_subjects(x) for x in m) >= len(ids), timeout=120)
    finally:
        first.stop()
        second.stop()
    counts = {task_id: _mentions(messages, task_id) for task_id in ids}
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    digests = [m for m in messages if "in a digest" in m["title"]]
    assert digests and len(messages) < 200, len(messages)  # rate-limited into digests, not 1000 messages


def _subjects(message: dict) -> int:
    found = re.match(r".*trainyard: (\d+) alerts", message["title"])
    return int(found.group(1)) if found else 1


def test_exactly_once_across_a_restart_and_catch_up_on_what_happened_meanwhile(conn, receiver):
    Queue.create("cpu")
    _rule(conn, receiver, on="failed")
    with ServiceProcess(SERVICE):
        wait_service(conn, "alerts")
        before = _fail_directly(conn, "cpu", 3)
        receiver.wait_for(lambda m: len(m) >= 3)
    meanwhile = _fail_directly(conn, "cpu", 2)  # no service runs
    with ServiceProcess(SERVICE):
        messages = receiver.wait_for(lambda m: len(m) >= 5)
        _rule(conn, receiver, on="completed")
        marker = Task.create("marker", command=["true"]).enqueue("cpu")
        with WorkerProcess("-q", "cpu", "--cpu-only", "--burst") as runner:
            assert runner.wait() == 0
        messages = receiver.wait_for(lambda m: any(marker.id in x["message"] for x in m))
    assert len(messages) == 6
    assert all(_mentions(messages, i) == 1 for i in before + meanwhile)


def test_a_rule_added_while_a_service_runs_applies_to_the_very_next_event(conn, receiver):
    Queue.create("cpu")
    with ServiceProcess(SERVICE):
        wait_service(conn, "alerts")
        _rule(conn, receiver, on="failed")  # the service read the rules (none) when it started
        [task_id] = _fail_directly(conn, "cpu", 1)
        messages = receiver.wait_for(lambda m: m)
    assert task_id in messages[0]["message"]


STALLS_AFTER_A_HIGH_LOSS = """
import pathlib, sys, time
from trainyard import current_task
task = current_task()
task.log_metric("loss", "train", 12.5, step=1)
print("reported", flush=True)
gate = pathlib.Path(sys.argv[1])
while not gate.exists():
    time.sleep(0.05)
"""


def test_a_metric_over_its_threshold_and_a_stalled_task_each_give_one_message(conn, receiver, tmp_path):
    Queue.create("cpu")
    script = tmp_path / "stalls.py"
    script.write_text(STALLS_AFTER_A_HIGH_LOSS)
    gate = tmp_path / "go"
    _rule(conn, receiver, on="metric", metric="loss/train", above=10, tags=["watched"])
    _rule(conn, receiver, on="stalled", minutes=0.02, project="vision")
    _rule(conn, receiver, on="metric", metric="loss/train", above=10, user="somebody-else")  # filtered out
    task = Task.create("stalls", project="vision", tags=["watched"], command=["python", str(script), str(gate)])
    with ServiceProcess(SERVICE), WorkerProcess("-q", "cpu", "--cpu-only") as worker:
        wait_service(conn, "alerts")
        task.enqueue("cpu")
        messages = receiver.wait_for(lambda m: len(m) >= 2)
        gate.touch()
        assert wait_status(task).status == TaskStatus.COMPLETED
        _rule(conn, receiver, on="completed", name="marker", project="marker")  # not the task that just ended
        marker = Task.create("marker", project="marker", command=["true"]).enqueue("cpu")
        messages = receiver.wait_for(lambda m: any(marker.id in x["message"] for x in m))
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
    bodies = sorted(m["message"].splitlines()[0] for m in messages if task.id in m["message"])
    assert len(bodies) == 2, bodies
    assert "metric loss/train rose above 10 (max 12.5)" in bodies[0]
    assert "stalled (no log or metric for" in bodies[1]


def test_a_failed_pipeline_run_gives_one_message(conn, receiver):
    from trainyard import Pipeline

    Queue.create("cpu")
    Queue.create("services")
    breaks = Task.create("breaks", project="tpl", command=["python", "-c", "raise SystemExit(4)"])
    _rule(conn, receiver, on="failed", pipelines=True)
    pipe = Pipeline("nightly", project="etl", default_queue="cpu").add_step("only", base_task=breaks.id)
    with (
        ServiceProcess(SERVICE),
        WorkerProcess("-q", "services", "--services-mode", "2"),
        WorkerProcess("-q", "cpu", "--cpu-only"),
    ):
        wait_service(conn, "alerts")
        run_id = pipe.start(queue="services")
        assert pipe.wait(timeout=180).status == "failed"
        _rule(conn, receiver, on="completed", project="marker")
        marker = Task.create("marker", project="marker", command=["true"]).enqueue("cpu")
        messages = receiver.wait_for(lambda m: any(marker.id in x["message"] for x in m))
    runs = [m for m in messages if run_id in m["message"]]
    assert len(runs) == 1 and runs[0]["title"] == "trainyard: pipeline 'nightly' failed", messages


def test_the_services_show_in_worker_list(run_cli, conn):
    with ServiceProcess(SERVICE):
        wait_service(conn, "alerts")
        listed = run_cli("worker", "list", check=True).stdout
    assert "alerts" in listed and "sent" in listed


def test_a_receiver_that_refuses_gets_the_message_again_later(conn):
    Queue.create("cpu")
    with Receiver(status=500) as receiver:
        _rule(conn, receiver, on="failed")
        with ServiceProcess(SERVICE):
            wait_service(conn, "alerts")
            _fail_directly(conn, "cpu", 1)
            _wait_history(conn, lambda h: any(not e["ok"] for e in h))
            receiver.status = 200
            messages = receiver.wait_for(lambda m: m)
    assert len(messages) == 1


def _wait_history(conn, predicate, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    cursor = "0-0"
    while not predicate(alertstore.history(conn)):
        if time.monotonic() > deadline:
            raise AssertionError("history condition not met")
        reply = conn.xread({keys.ALERT_HISTORY: cursor}, block=500, count=100)
        for _, entries in reply or []:
            cursor = entries[-1][0]


def test_cli_manages_rules_and_hides_secrets(run_cli, conn, receiver):
    Queue.create("cpu")
    added = run_cli("alerts", "add", "--on", "failed", "--queue", "cpu", "--notify", receiver.url, "--json", check=True)
    rule_id = json.loads(added.stdout)["id"]
    run_cli(
        "alerts",
        "add",
        "--on",
        "failed",
        "--notify",
        "slack://TokenA/TokenB/TokenC/#general",
        "--name",
        "team",
        check=True,
    )
    listed = run_cli("alerts", "list", check=True).stdout
    assert rule_id in listed and "team" in listed and "TokenB" not in listed
    tested = run_cli("alerts", "test", rule_id, check=True)
    assert "delivered" in tested.stdout
    assert receiver.wait_for(lambda m: m)[0]["title"].startswith("trainyard: test of alert rule")
    run_cli("alerts", "remove", rule_id, check=True)
    assert rule_id not in run_cli("alerts", "list", check=True).stdout
    assert "no alert rule" in run_cli("alerts", "remove", rule_id).stderr


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["--on", "failed", "--notify", "nosuch://x/y"], "scheme 'nosuch' is not one Apprise can send to"),
        (["--on", "failed", "--queue", "nowhere", "--notify", "json://127.0.0.1:9/h"], "no queue named 'nowhere'"),
        (["--on", "queue_wait", "--notify", "json://127.0.0.1:9/h"], "needs minutes > 0"),
        (["--on", "metric", "--metric", "loss", "--notify", "json://127.0.0.1:9/h", "--above", "1"], "TITLE/SERIES"),
        (["--on", "sometimes", "--notify", "json://127.0.0.1:9/h"], "sometimes"),
    ],
)
def test_bad_rules_get_one_clear_line_and_nothing_is_written(run_cli, conn, args, complaint):
    proc = run_cli("alerts", "add", *args)
    assert proc.returncode != 0
    assert complaint in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not conn.exists(keys.ALERT_RULES)
