"""The HTTP API against the real app on the real test Redis: access (401/403), every endpoint's
answers, 404s and validation errors as JSON. Live streams are covered in test_web_live.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from fastapi.openapi.utils import get_openapi
from fastapi.testclient import TestClient
from redis_server import free_port

from trainyard import Queue, Task
from trainyard.cli import cli
from trainyard.controller import run_store
from trainyard.controller.model import PipelineRun, StepSpec, StepState
from trainyard.queues import keys, logs, workers
from trainyard.queues.store import TaskStore
from trainyard.web import auth, create_app

PUBLIC = {("POST", "/api/login"), ("POST", "/api/logout")}
READ_ONLY_POSTS: set[tuple[str, str]] = set()  # validating a pipeline file needs admin too (issue 15)


@pytest.fixture
def app(redis_server):
    return create_app(redis_server.url)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def tokens(conn):
    made = {
        role: auth.create_token(conn, user, role)[0]
        for user, role in [("alice", "admin"), ("bob", "read"), ("ci", "trigger")]
    }
    return {role: {"Authorization": f"Bearer {token}"} for role, token in made.items()}


def _routes(app) -> list[tuple[str, str]]:
    """Every API operation, as the OpenAPI document lists them (plus the document itself)."""
    paths = get_openapi(title="t", version="0", routes=app.routes)["paths"]
    out = [(method.upper(), path) for path, ops in paths.items() for method in ops]
    out.append(("GET", "/api/openapi.json"))
    return sorted(out)


def _fill(path: str) -> str:
    return path.replace("{task_id}", "0123456789abcdef").replace("{name}", "nothing").replace("{run_id}", "nope")


def _error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["status"] == status and body["code"] == code and body["message"]
    return body


# -- access ---------------------------------------------------------------------------------------
def test_every_endpoint_needs_a_token(app, client, tokens):
    routes = _routes(app)
    assert len(routes) >= 30  # the whole API is walked, not a sample
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        url = _fill(path)
        resp = client.request(method, url)
        body = _error(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"] == "Bearer", (method, path)
        _error(client.request(method, url, headers={"Authorization": "Bearer ty_wrong"}), 401, "unauthorized")
        bad = client.request(method, url, headers={"Authorization": "Basic abc"})
        assert "Bearer" in _error(bad, 401, "unauthorized")["message"]
        assert "token" in body["message"] or "log in" in body["message"]


def test_read_role_is_refused_every_change(app, client, tokens):
    changes = [(m, p) for m, p in _routes(app) if m != "GET" and (m, p) not in PUBLIC | READ_ONLY_POSTS]
    assert len(changes) >= 18
    for method, path in changes:
        resp = client.request(method, _fill(path), headers=tokens["read"], json={})
        body = _error(resp, 403, "forbidden")
        assert "bob" in body["message"] and "admin" in body["message"], (method, path)


def test_trigger_role_may_only_trigger(app, client, tokens):
    for method, path in _routes(app):
        if (method, path) in PUBLIC or path.endswith("/trigger"):
            continue
        body = _error(client.request(method, _fill(path), headers=tokens["trigger"], json={}), 403, "forbidden")
        assert "trigger role" in body["message"], (method, path)
    fired = client.post("/api/pipelines/nothing/trigger", headers=tokens["trigger"], json={})
    assert "no registered pipeline" in _error(fired, 404, "not_found")["message"]  # let in; nothing to fire
    refused = client.post("/api/login", json={"token": tokens["trigger"]["Authorization"].split()[1]})
    assert "cannot log in" in _error(refused, 403, "forbidden")["message"]


def test_unknown_things_are_404_json(client, tokens):
    h = tokens["admin"]
    for method, url in [
        ("GET", "/api/tasks/0123456789abcdef"),
        ("PATCH", "/api/tasks/0123456789abcdef"),
        ("DELETE", "/api/tasks/0123456789abcdef"),
        ("POST", "/api/tasks/0123456789abcdef/abort"),
        ("POST", "/api/tasks/0123456789abcdef/dequeue"),
        ("POST", "/api/tasks/0123456789abcdef/reset"),
        ("GET", "/api/tasks/0123456789abcdef/log"),
        ("GET", "/api/tasks/0123456789abcdef/metrics"),
        ("GET", "/api/tasks/0123456789abcdef/stream"),
        ("GET", "/api/tasks/0123456789abcdef/artifacts/model"),
        ("GET", "/api/tasks/0123456789abcdef/log/file"),
        ("GET", "/api/queues/nothing"),
        ("DELETE", "/api/queues/nothing"),
        ("PATCH", "/api/queues/nothing"),
        ("GET", "/api/workers/nobody"),
        ("POST", "/api/workers/nobody/drain"),
        ("POST", "/api/workers/nobody/stop"),
        ("GET", "/api/runs/nope"),
        ("POST", "/api/runs/nope/abort"),
        ("POST", "/api/runs/nope/retry"),
        ("GET", "/api/pipelines/nothing"),
        ("GET", "/api/no-such-endpoint"),
    ]:
        body = {"max_running": 1} if method == "PATCH" and "queues" in url else {}
        resp = client.request(method, url, headers=h, json=body)
        assert _error(resp, 404, "not_found")["message"], (method, url)
    assert "0123456789abcdef" in client.get("/api/tasks/0123456789abcdef", headers=h).json()["error"]["message"]


def test_validation_errors_are_clear_json(client, tokens):
    h = tokens["admin"]
    missing = _error(client.post("/api/tasks", headers=h, json={"name": "x"}), 422, "invalid")
    assert missing["message"] == "invalid body field 'command': Field required"
    assert missing["details"] == [{"in": "body", "field": "command", "message": "Field required"}]
    extra = _error(client.post("/api/queues", headers=h, json={"name": "q", "colour": "red"}), 422, "invalid")
    assert extra["details"][0]["field"] == "colour"
    typed = _error(client.post("/api/queues", headers=h, json={"name": "q", "max_running": "lots"}), 422, "invalid")
    assert "max_running" in typed["message"]
    assert "limit" in _error(client.get("/api/tasks?limit=0", headers=h), 422, "invalid")["message"]
    assert "limit" in _error(client.get("/api/tasks?limit=100000", headers=h), 422, "invalid")["message"]
    assert "offset" in _error(client.get("/api/workers?offset=-1", headers=h), 422, "invalid")["message"]
    assert (
        "unknown status 'sleeping'"
        in _error(client.get("/api/tasks?status=sleeping", headers=h), 422, "invalid")["message"]
    )
    bad_queue = _error(client.post("/api/queues", headers=h, json={"name": "no spaces"}), 422, "invalid")
    assert "invalid queue name" in bad_queue["message"]
    not_json = client.post("/api/queues", headers={**h, "Content-Type": "application/json"}, content=b"{nope")
    assert _error(not_json, 422, "invalid")["details"]
    bad_cursor = _error(client.get(f"/api/tasks/{_draft().id}/log?after=zzz", headers=h), 422, "invalid")
    assert "bad log cursor" in bad_cursor["message"]


def _draft(name: str = "t", **kw) -> Task:
    return Task.create(name, "web", command=["true"], **kw)


# -- login and sessions ------------------------------------------------------------------------
def test_browser_login_session_and_logout(client, conn, tokens):
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/login").status_code == 200
    assert client.get("/static/vendor/cytoscape.min.js").status_code == 200  # no data in static files
    _error(client.post("/api/login", json={"token": "ty_nope"}), 401, "unauthorized")
    admin_token = tokens["admin"]["Authorization"].split()[1]
    resp = client.post("/api/login", json={"token": admin_token})
    assert resp.json() == {"user": "alice", "role": "admin"}
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and admin_token not in cookie
    assert client.get("/api/me").json()["user"] == "alice"
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    # a change carried only by the cookie must come from the app's own origin
    _error(client.post("/api/queues", json={"name": "q"}, headers={"Origin": "https://evil.example"}), 403, "forbidden")
    assert client.post("/api/queues", json={"name": "q"}, headers={"Origin": "http://testserver"}).status_code == 201
    # revoking the token ends its sessions at once
    auth.revoke(conn, auth.lookup(conn, admin_token).token_id)
    _error(client.get("/api/me"), 401, "unauthorized")
    client.post("/api/logout")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_tokens_are_stored_hashed_and_bootstrap_once(conn):
    first = auth.ensure_admin_token(conn)
    assert first and first.startswith("ty_")
    assert auth.ensure_admin_token(conn) is None  # printed once, on first start only
    stored = conn.hgetall(keys.WEB_TOKENS)
    assert first.encode() not in b"".join(list(stored) + list(stored.values()))
    assert auth.lookup(conn, first).role == "admin"
    with pytest.raises(Exception, match="unknown role"):
        auth.create_token(conn, "carol", "root")
    assert auth.create_token(conn, "hook", "trigger")[1].role == "trigger"


def test_openapi_document_lists_the_api(client, tokens):
    doc = client.get("/api/openapi.json", headers=tokens["read"]).json()
    for path in ("/api/tasks", "/api/tasks/{task_id}/log", "/api/queues/{name}/move", "/api/workers/{name}/drain"):
        assert path in doc["paths"], path
    assert "/api/pipelines/{name}/trigger" in doc["paths"]


# -- tasks ---------------------------------------------------------------------------------------
def test_task_endpoints(client, conn, tokens):
    h, r = tokens["admin"], tokens["read"]
    Queue.create("cpu")
    created = client.post(
        "/api/tasks",
        headers=h,
        json={"name": "train", "project": "vision", "command": ["python", "-c", "print(1)"], "parameters": {"lr": 0.1}},
    )
    assert created.status_code == 201
    task = created.json()
    assert task["user"] == "alice" and task["parameters"] == {"General/lr": 0.1} and task["status"] == "draft"
    tid = task["id"]
    assert client.get(f"/api/tasks/{tid}", headers=r).json()["script"]["command"] == ["python", "-c", "print(1)"]

    edited = client.patch(f"/api/tasks/{tid}", headers=h, json={"parameters": {"Args/lr": 0.5}, "comment": "hi"}).json()
    assert edited["parameters"] == {"Args/lr": 0.5} and edited["comment"] == "hi"

    clone = client.post(f"/api/tasks/{tid}/clone", headers=h, json={"name": "train-2", "parameters": {"Args/lr": 1}})
    assert clone.status_code == 201 and clone.json()["parent"] == tid and clone.json()["parameters"]["Args/lr"] == 1

    queued = client.post(f"/api/tasks/{tid}/enqueue", headers=h, json={"queue": "cpu", "priority": 3}).json()
    assert queued["status"] == "queued" and queued["queue"] == "cpu" and queued["priority"] == 3
    conflict = _error(client.patch(f"/api/tasks/{tid}", headers=h, json={"parameters": {}}), 409, "conflict")
    assert "it is queued" in conflict["message"]
    to_gpu = client.post(f"/api/tasks/{clone.json()['id']}/enqueue", headers=h, json={"queue": "gpu"})
    missing_queue = _error(to_gpu, 404, "not_found")
    assert "no queue named 'gpu'" in missing_queue["message"]
    _error(client.delete(f"/api/tasks/{tid}", headers=h), 409, "conflict")

    assert client.post(f"/api/tasks/{tid}/dequeue", headers=h).json()["status"] == "draft"
    client.post(f"/api/tasks/{tid}/enqueue", headers=h, json={"queue": "cpu"})
    aborted = client.post(f"/api/tasks/{tid}/abort", headers=h, json={"message": "not needed"}).json()
    assert aborted["status"] == "aborted" and aborted["status_message"] == "not needed"
    assert client.post(f"/api/tasks/{tid}/reset", headers=h).json()["status"] == "draft"
    assert client.delete(f"/api/tasks/{tid}", headers=h).json() == {"deleted": tid}
    _error(client.get(f"/api/tasks/{tid}", headers=h), 404, "not_found")


def test_task_list_filters_and_pages(client, tokens):
    h = tokens["read"]
    for i in range(7):
        _draft(f"sweep-{i}", tags=["sweep"] if i % 2 else [])
    Task.create("other", "elsewhere", command=["true"])
    page = client.get("/api/tasks?limit=3", headers=h).json()
    assert [len(page["items"]), page["total"], page["next_offset"]] == [3, 8, 3]
    assert page["items"][0]["name"] == "other"  # newest first
    assert set(page["items"][0]) >= {"id", "name", "status", "queue", "worker", "created"}
    assert "parameters" not in page["items"][0]  # list rows stay small
    last = client.get("/api/tasks?limit=3&offset=6", headers=h).json()
    assert len(last["items"]) == 2 and last["next_offset"] is None
    assert client.get("/api/tasks?project=elsewhere", headers=h).json()["total"] == 1
    assert client.get("/api/tasks?tag=sweep", headers=h).json()["total"] == 3
    named = client.get("/api/tasks?name=sweep-*&project=web&limit=50", headers=h).json()
    assert len(named["items"]) == 7 and named["total"] is None  # two filters: no exact count, still paged
    both = client.get("/api/tasks?status=draft,queued", headers=h).json()
    assert len(both["items"]) == 8


def test_log_and_metrics(client, conn, tokens):
    h = tokens["read"]
    task = _draft()
    with conn.pipeline() as pipe:
        logs.append_lines(pipe, task.id, [("out", f"line {i}") for i in range(5)] + [("err", "oops")])
        logs.append_metrics(
            pipe,
            task.id,
            [{"title": "loss", "series": "train", "value": 1.0 / (i + 1), "step": i} for i in range(50)]
            + [{"title": "loss", "series": "val", "value": 0.5, "step": 10}],
        )
        pipe.execute()
    log = client.get(f"/api/tasks/{task.id}/log?limit=2", headers=h).json()
    assert [ln["text"] for ln in log["lines"]] == ["line 0", "line 1"]
    rest = client.get(f"/api/tasks/{task.id}/log?after={log['next']}", headers=h).json()
    assert [ln["text"] for ln in rest["lines"]] == ["line 2", "line 3", "line 4", "oops"]
    assert rest["lines"][-1]["stream"] == "err"
    assert [ln["text"] for ln in client.get(f"/api/tasks/{task.id}/log?tail=2", headers=h).json()["lines"]] == [
        "line 4",
        "oops",
    ]
    metrics = client.get(f"/api/tasks/{task.id}/metrics?max_points=10", headers=h).json()
    train = metrics["charts"]["loss"]["train"]
    assert len(train["steps"]) <= 11 and train["steps"][0] == 0 and train["steps"][-1] == 49  # thinned, ends kept
    assert metrics["charts"]["loss"]["val"] == {"steps": [10], "values": [0.5]}
    assert metrics["last_id"]
    _error(client.get(f"/api/tasks/{task.id}/metrics?max_points=1", headers=h), 422, "invalid")


def test_artifact_download(client, conn, tokens, tmp_path):
    from trainyard.queues.record import Artifact
    from trainyard.settings import settings

    task = _draft()
    root = Path(settings().artifacts_url)
    inside = root / task.id / "model" / "model.bin"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"weights")
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the web")

    def add(record):
        record.artifacts = {
            "model": Artifact(name="model", uri=str(inside), size=7),
            "stray": Artifact(name="stray", uri=str(outside), size=15),
        }

    TaskStore(conn).update(task.id, add)
    resp = client.get(f"/api/tasks/{task.id}/artifacts/model", headers=tokens["read"])
    assert resp.status_code == 200 and resp.content == b"weights"
    assert 'filename="model.bin"' in resp.headers["content-disposition"]
    stray = _error(client.get(f"/api/tasks/{task.id}/artifacts/stray", headers=tokens["read"]), 404, "not_found")
    assert "not readable from this web server" in stray["message"]
    _error(client.get(f"/api/tasks/{task.id}/artifacts/none", headers=tokens["read"]), 404, "not_found")
    assert (
        "has no stored log file"
        in _error(client.get(f"/api/tasks/{task.id}/log/file", headers=tokens["read"]), 404, "not_found")["message"]
    )


# -- queues --------------------------------------------------------------------------------------
def test_queue_endpoints(client, tokens):
    h = tokens["admin"]
    made = client.post("/api/queues", headers=h, json={"name": "gpu", "description": "A100s", "max_running": 2})
    assert made.status_code == 201 and made.json()["max_running"] == 2
    _error(client.post("/api/queues", headers=h, json={"name": "gpu"}), 422, "invalid")  # exists
    ids = [_draft(f"t{i}").enqueue("gpu", priority=i % 2).id for i in range(5)]  # priorities 0 1 0 1 0
    page = client.get("/api/queues/gpu?limit=2", headers=tokens["read"]).json()
    assert page["queue"]["length"] == 5 and page["total"] == 5 and page["next_offset"] == 2
    assert [e["task_id"] for e in page["items"]] == [ids[1], ids[3]]  # higher priority first
    assert page["items"][0]["task"]["name"] == "t1"
    moved = client.post("/api/queues/gpu/move", headers=h, json={"task_id": ids[4], "to": "top"}).json()
    assert moved["position"] == 0
    assert client.post("/api/queues/gpu/move", headers=h, json={"task_id": ids[4], "to": 3}).json()["position"] == 3
    middle = client.post("/api/queues/gpu/move", headers=h, json={"task_id": ids[4], "to": "middle"})
    bad_move = _error(middle, 422, "invalid")
    assert bad_move["details"]
    assert client.patch("/api/queues/gpu", headers=h, json={"max_running": 0}).json()["max_running"] == 0
    listing = client.get("/api/queues", headers=tokens["read"]).json()
    assert [q["name"] for q in listing["items"]] == ["gpu"] and listing["items"][0]["length"] == 5
    _error(client.delete("/api/queues/gpu", headers=h), 409, "conflict")  # tasks wait in it
    gone = client.delete("/api/queues/gpu?force=true", headers=h).json()
    assert sorted(gone["returned_to_draft"]) == sorted(ids)
    assert Task.get(ids[0]).status.value == "draft"


# -- workers -------------------------------------------------------------------------------------
def _register(conn, name: str, gpus: int = 2) -> None:
    info = workers.WorkerInfo(
        name=name,
        host="gpu-box",
        pid=4242,
        queues=["gpu"],
        gpus=list(range(gpus)),
        stats={
            "cpu_percent": 12.5,
            "memory": {"total_mb": 64000, "used_mb": 3200, "percent": 5.0},
            "gpus": [
                {"index": i, "name": "A100", "utilization_pct": 40 + i, "memory_used_mb": 900, "memory_total_mb": 40960}
                for i in range(gpus)
            ],
        },
    )
    workers.register(conn, info, pid_alive=lambda pid: True)


def test_worker_endpoints(client, conn, tokens):
    for name in ("w-a", "w-b", "w-c"):
        _register(conn, name)
    page = client.get("/api/workers?limit=2", headers=tokens["read"]).json()
    assert [w["name"] for w in page["items"]] == ["w-a", "w-b"] and page["total"] == 3 and page["next_offset"] == 2
    one = client.get("/api/workers/w-c", headers=tokens["read"]).json()
    assert one["stats"]["gpus"][1]["utilization_pct"] == 41 and one["heartbeat_age_s"] >= 0
    assert client.post("/api/workers/w-a/drain", headers=tokens["admin"]).json()["command"] == "drain"
    assert workers.get(conn, "w-a").command == "drain"
    assert client.post("/api/workers/w-b/stop", headers=tokens["admin"]).json()["command"] == "stop"
    conn.delete(keys.worker("w-c"))  # its heartbeats stopped and the entry expired
    assert client.get("/api/workers", headers=tokens["read"]).json()["total"] == 2


# -- pipeline runs -------------------------------------------------------------------------------
def _run(conn, controller_queue: str | None = None) -> PipelineRun:
    controller = Task.create("demo v1", "web", command=["python", "-m", "trainyard.controller.run"])
    run = PipelineRun(
        id=controller.id,
        name="demo",
        project="web",
        steps={
            "prep": StepSpec(name="prep", base_task="web/prep"),
            "train": StepSpec(name="train", base_task="web/train", parameter_override={"Args/d": "${prep.id}"}),
            "eval": StepSpec(name="eval", base_task="web/eval", parents=["train"]),
        },
        state={"prep": StepState(status="completed", task_id="aaaa"), "train": StepState(status="running")},
        status="running",
        controller_queue=controller_queue,
        started=time.time(),
    )
    run_store.save(conn, run)
    return run


def test_run_endpoints(client, conn, tokens):
    run = _run(conn)
    page = client.get("/api/runs", headers=tokens["read"]).json()
    assert page["total"] == 1 and page["items"][0]["steps_done"] == 1 and page["items"][0]["steps_total"] == 3
    detail = client.get(f"/api/runs/{run.id}", headers=tokens["read"]).json()
    states = {n["id"]: n["status"] for n in detail["nodes"]}
    assert states == {"prep": "completed", "train": "running", "eval": "pending"}
    assert sorted((e["source"], e["target"]) for e in detail["edges"]) == [("prep", "train"), ("train", "eval")]
    assert detail["controller_status"] == "draft"
    refused = _error(client.post(f"/api/runs/{run.id}/retry", headers=tokens["admin"]), 422, "invalid")
    assert "trainyard pipeline retry" in refused["message"]
    client.post(f"/api/runs/{run.id}/abort", headers=tokens["admin"])
    assert conn.get(keys.pipeline(run.id) + ":stop") == b"1"


def test_retry_a_failed_services_run(client, conn, tokens):
    Queue.create("services")
    run = _run(conn, controller_queue="services")
    run.status, run.state["train"] = "failed", StepState(status="failed", error="boom")
    run_store.save(conn, run)
    retried = client.post(f"/api/runs/{run.id}/retry", headers=tokens["admin"])
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    states = {n["id"]: n["status"] for n in client.get(f"/api/runs/{run.id}", headers=tokens["read"]).json()["nodes"]}
    assert states == {"prep": "completed", "train": "pending", "eval": "pending"}  # finished steps stay
    assert Task.get(run.id).status.value == "queued"  # its controller is back on the services queue
    again = _error(client.post(f"/api/runs/{run.id}/retry", headers=tokens["admin"]), 422, "invalid")
    assert "queued already" in again["message"]


def test_overview_counts(client, tokens, conn):
    Queue.create("cpu")
    _draft("a")
    _draft("b").enqueue("cpu")
    _register(conn, "w1")
    o = client.get("/api/overview", headers=tokens["read"]).json()
    assert o["tasks"]["draft"] == 1 and o["tasks"]["queued"] == 1 and o["tasks_total"] == 2
    assert o["queues"] == 1 and o["workers"] == 1 and o["runs"] == 0


def test_cli_token_commands(conn):
    """`trainyard web token ...` in-process (CliRunner; the server itself runs as a real process in
    test_web_live.py)."""

    def run(*args: str):
        return CliRunner().invoke(cli, ["web", "token", *args])

    made = run("create", "--user", "dana", "--role", "read")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("ty_") and auth.lookup(conn, secret).user == "dana"
    listed = json.loads(run("list", "--json").stdout)
    assert [(t["user"], t["role"]) for t in listed] == [("dana", "read")] and secret not in json.dumps(listed)
    bad = run("create", "--user", "x", "--role", "root")
    assert bad.exit_code == 2 and "root" in bad.output
    assert run("revoke", listed[0]["id"]).exit_code == 0
    assert auth.lookup(conn, secret) is None
    missing = run("revoke", "nope")
    assert missing.exit_code == 1 and "no token with id 'nope'" in missing.output


# -- pipeline files --------------------------------------------------------------------------------
GOOD_FILE = """name: nightly
project: web
queue: cpu
params:
  lr: 0.1
on:
  manual:
    inputs:
      note: {type: string, default: hi}
jobs:
  prepare:
    steps:
      - run: echo prepare
  train:
    needs: [prepare]
    steps:
      - run: echo "train ${{ params.lr }}"
"""


def test_pipeline_file_validation_gives_lines(client, tokens):
    refused = client.post("/api/pipelines/validate", headers=tokens["read"], json={"text": GOOD_FILE})
    assert refused.status_code == 403
    ok = client.post("/api/pipelines/validate", headers=tokens["admin"], json={"text": GOOD_FILE}).json()
    assert ok == {"ok": True, "errors": []}
    for wrong, right, line in [("rnu: x", "run: echo prepare", 13), ("needs: [prep]", "needs: [prepare]", 15)]:
        text = GOOD_FILE.replace(right, wrong)
        bad = client.post("/api/pipelines/validate", headers=tokens["admin"], json={"text": text}).json()
        assert not bad["ok"] and bad["errors"][0]["line"] == line, bad["errors"]
        assert all(e["message"] and e["file"] == "<editor>" for e in bad["errors"])
    broken = client.post("/api/pipelines/validate", headers=tokens["admin"], json={"text": "name: x\njobs: [\n"}).json()
    assert broken["errors"][0]["message"].startswith("syntax error")


def test_pipeline_file_submit_list_and_trigger(client, tokens):
    h = tokens["admin"]
    Queue.create("cpu")
    Queue.create("services")
    bad = _error(
        client.post("/api/pipelines", headers=h, json={"text": "name: x\njobs: {}\nbogus: 1\n"}), 422, "invalid"
    )
    assert bad["message"].startswith("line ") and all("line" in d for d in bad["details"])
    assert client.get("/api/pipelines", headers=h).json()["total"] == 0  # nothing registered by a bad file

    made = client.post("/api/pipelines", headers=h, json={"text": GOOD_FILE, "parameters": {"lr": 0.5}})
    assert made.status_code == 201, made.text
    run_id = made.json()["run_id"]
    run = client.get(f"/api/runs/{run_id}", headers=h).json()
    assert sorted(n["id"] for n in run["nodes"]) == ["prepare", "train"]
    assert run["edges"] == [{"source": "prepare", "target": "train"}]
    assert Task.get(run_id).status.value == "queued"  # the controller waits on the services queue

    files = client.get("/api/pipelines", headers=tokens["read"]).json()
    assert [(f["name"], f["project"]) for f in files["items"]] == [("nightly", "web")]
    assert client.get("/api/pipelines/nightly?project=web", headers=tokens["read"]).json()["text"] == GOOD_FILE

    fired = client.post("/api/pipelines/nightly/trigger", headers=tokens["trigger"], json={"inputs": {"note": "CI"}})
    assert fired.status_code == 200 and fired.json()["run_id"] != run_id
    _error(client.post("/api/pipelines/nope/trigger", headers=h, json={}), 404, "not_found")
    wrong = _error(
        client.post("/api/pipelines/nightly/trigger", headers=h, json={"inputs": {"nope": 1}}), 422, "invalid"
    )
    assert "nope" in wrong["message"]


def test_redis_outage_is_a_503_json(app, client, tokens):
    app.state.conn = redis.Redis(port=free_port(), socket_connect_timeout=1)  # nothing listens there
    body = _error(client.get("/api/tasks", headers=tokens["read"]), 503, "unavailable")
    assert "Redis" in body["message"]


def test_the_editor_checks_what_pipeline_validate_checks(client, tokens, tmp_path, monkeypatch):
    """Issue 14, 2f: the editor answered ok for a missing action, an unknown input and an undeclared
    output that ``trainyard pipeline validate`` refuses (it skipped resolving actions)."""
    from gitrepo import git, make_repo

    repos = tmp_path / "repos"
    add = Path(__file__).resolve().parent.parent / "examples" / "pipelines" / "actions" / "add"
    make_repo(repos / "examples" / "add", {p.name: p.read_text() for p in add.iterdir()})
    git(repos / "examples" / "add", "tag", "v1")
    monkeypatch.setenv("TRAINYARD_ACTIONS_SOURCE", str(repos))
    text = """name: editor
jobs:
  a:
    steps:
      - id: sum
        action: examples/add@v1
        inputs: {a: 1, c: 2}
      - action: examples/missing@v1
    outputs: {total: "${{ steps.sum.outputs.total }}"}
"""
    answer = client.post("/api/pipelines/validate", headers=tokens["admin"], json={"text": text}).json()
    messages = [(e["line"], e["message"]) for e in answer["errors"]]
    assert not answer["ok"]
    assert (7, "unknown input 'c' of action examples/add@v1 (declared: a, b)") in messages
    assert any(line == 8 and "cannot fetch action" in message for line, message in messages), messages
    assert (9, "${{ steps.sum.outputs.total }}: step 'sum''s action declares no output 'total' (outputs: sum)") in (
        messages
    )
