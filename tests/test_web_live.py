"""`trainyard web` as a real process: first-start token, loopback binding, and the live streams
(server-sent events) with a real worker running a real task."""

from __future__ import annotations

import json
import textwrap

import httpx
import pytest
from webserver import WebServer
from workerproc import WorkerProcess, wait_worker_registered

from trainyard import Queue, Task
from trainyard.web import auth


@pytest.fixture(scope="module")
def server(redis_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("web-live")
    web = WebServer({"TRAINYARD_REDIS_URL": redis_server.url, "TRAINYARD_HOME": str(home)}, home).start()
    yield web
    web.stop()


@pytest.fixture
def bearer(conn):
    token, _ = auth.create_token(conn, "alice", "admin")
    return {"Authorization": f"Bearer {token}"}


class Events:
    """Reads server-sent events from one streaming response."""

    def __init__(self, response: httpx.Response):
        self.lines = response.iter_lines()

    def until(self, until) -> list[tuple[str, dict]]:
        return read_events(self.lines, until)


def read_events(lines, until) -> list[tuple[str, dict]]:
    """SSE messages (event name, data) until ``until(name, data)`` is true; the server's stream
    never ends by itself, so the test stops reading when it has seen what it waits for."""
    seen, name, data = [], "message", []
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            item = (name, json.loads("".join(data)))
            seen.append(item)
            if until(*item):
                return seen
            name, data = "message", []
    raise AssertionError(f"stream ended early; saw {seen}")


def test_first_start_prints_an_admin_token_and_binds_loopback(redis_server, tmp_path):
    env = {"TRAINYARD_REDIS_URL": redis_server.url, "TRAINYARD_HOME": str(tmp_path)}
    web = WebServer(env, tmp_path).start()
    try:
        token = web.read_token()
        assert token and token.startswith("ty_")
        assert "http://127.0.0.1:" in web.stderr()
        me = httpx.get(f"{web.url}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert me.json()["role"] == "admin"
        assert httpx.get(f"{web.url}/api/tasks", timeout=30).status_code == 401
    finally:
        web.stop()
    again = WebServer(env, tmp_path).start()
    again.stop()
    assert again.read_token() is None  # an admin token exists: nothing new is printed


def test_event_stream_delivers_changes_live(server, bearer):
    Queue.create("cpu")
    with httpx.Client(timeout=60) as client, client.stream("GET", f"{server.url}/api/events", headers=bearer) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = Events(resp)
        events.until(lambda name, data: name == "hello")
        task = Task.create("live", "web", command=["true"]).enqueue("cpu")
        seen = events.until(lambda name, data: data.get("task") == task.id and data.get("status") == "queued")
    kinds = [d["kind"] for n, d in seen if d.get("task") == task.id]
    assert kinds == ["created", "status"]


SCRIPT = textwrap.dedent(
    """
    import sys
    from trainyard import current_task
    task = current_task()
    for step in range(3):
        task.log_metric("loss", "train", 1.0 / (step + 1), step=step)
        print(f"step {step}", flush=True)
    print("warning here", file=sys.stderr, flush=True)
    print("all done", flush=True)
    """
)


def test_task_stream_follows_log_metrics_and_status(server, bearer, tmp_path):
    Queue.create("cpu")
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    task = Task.create("streamed", "web", command=["python", str(script)])
    url = f"{server.url}/api/tasks/{task.id}/stream"
    with WorkerProcess("--queue", "cpu", "--name", "live-w"), httpx.Client(timeout=60) as client:
        with client.stream("GET", url, headers=bearer) as resp:
            events = Events(resp)
            first = events.until(lambda name, data: name == "task")
            assert first[0][1]["status"] == "draft"
            task.enqueue("cpu")
            seen = events.until(lambda name, data: name == "task" and data["status"] == "completed")
        lines = [ln for name, d in first + seen if name == "log" for ln in d["lines"]]
        texts = [ln["text"] for ln in lines]
        assert [t for t in texts if t.startswith("step ")] == ["step 0", "step 1", "step 2"]
        assert "all done" in texts and {"out", "err", "sys"} <= {ln["stream"] for ln in lines}
        points = [p for name, d in seen if name == "metric" for p in d["points"]]
        assert [p["step"] for p in points] == [0, 1, 2] and points[0]["title"] == "loss"
        statuses = [d["status"] for name, d in seen if name == "task"]
        assert statuses[0] in ("queued", "running") and statuses[-1] == "completed"

        # a browser that reconnects sends the last id it saw and gets only what came after
        middle = lines[len(lines) // 2]["id"]
        headers = {**bearer, "Last-Event-ID": f"{middle}|0-0"}
        with client.stream("GET", url, headers=headers) as resp:
            rest = Events(resp).until(lambda name, data: name == "log")
        resumed = [ln["id"] for ln in rest[-1][1]["lines"]]
        assert resumed == [ln["id"] for ln in lines if ln["id"] > middle][: len(resumed)] and middle not in resumed


def test_worker_registry_entries_show_up(server, bearer, conn):
    with WorkerProcess("--queue", "cpu", "--name", "seen-w", "--cpu-only"):
        Queue.create("cpu", exist_ok=True)
        wait_worker_registered(conn, "seen-w")
        body = httpx.get(f"{server.url}/api/workers/seen-w", headers=bearer, timeout=30).json()
    assert body["name"] == "seen-w" and body["queues"] == ["cpu"] and body["heartbeat_age_s"] >= 0
