"""Pipeline files' variables (plain values, overridable per run) and secrets (names in the file,
values held by the worker): what steps and actions see, and where a secret value never appears."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from trainyard.cli import cli
from trainyard.controller.files import load_text, run_here
from trainyard.controller.files.errors import PipelineFileError
from trainyard.queues import logs
from trainyard.queues.errors import InvalidInput
from trainyard.queues.store import TaskStore
from trainyard.web import auth, create_app

SECRET = "s3cr3t-Value-9f2c"  # planted: must reach the step and nothing else
FILE = """
name: vars-and-secrets
variables:
  REGION: eu-west
  LEVEL: 3
secrets: [API_TOKEN]
jobs:
  a:
    steps:
      - id: shell
        run: |
          test "$REGION" = "${{ vars.REGION }}"
          echo "region=$REGION level=${{ vars.LEVEL }}"
          echo "token from env: $API_TOKEN, from the file: ${{ secrets.API_TOKEN }}"
          echo "digest=$(printf %s "$API_TOKEN" | sha256sum | cut -c1-16)" >> "$TRAINYARD_OUTPUT"
      - id: act
        action: ./actions/peek
        inputs: {token: "${{ secrets.API_TOKEN }}", region: "${{ vars.REGION }}"}
    outputs:
      region: ${{ vars.REGION }}
      digest: ${{ steps.shell.outputs.digest }}
      same: ${{ steps.act.outputs.same }}
      echoed: ${{ secrets.API_TOKEN }}
"""


@pytest.fixture
def pipeline(tmp_path):
    action = tmp_path / "actions" / "peek"
    action.mkdir(parents=True)
    (action / "action.yaml").write_text(
        "name: Peek\ninputs:\n  token: {type: string}\n  region: {type: string}\n"
        "outputs:\n  same: {type: boolean}\nruns: {using: python, main: main.py}\n"
    )
    (action / "main.py").write_text(
        "import os\nsame = os.environ['INPUT_TOKEN'] == os.environ['API_TOKEN'] != ''\n"
        "print('the action got', os.environ['INPUT_TOKEN'], 'in', os.environ['INPUT_REGION'])\n"
        "open(os.environ['TRAINYARD_OUTPUT'], 'a').write('same=' + ('true' if same else 'false') + '\\n')\n"
    )
    return load_text(FILE, "vars.yaml", base_dir=tmp_path)


def everything_in_redis(conn) -> str:
    """Every value of every key, read by type (DUMP would compress long strings)."""
    parts = []
    for key in conn.scan_iter(count=1000):
        kind = conn.type(key).decode()
        if kind == "string":
            parts.append(conn.get(key))
        elif kind == "hash":
            parts.extend(b for pair in conn.hgetall(key).items() for b in pair)
        elif kind == "list":
            parts.extend(conn.lrange(key, 0, -1))
        elif kind == "set":
            parts.extend(conn.smembers(key))
        elif kind == "zset":
            parts.extend(conn.zrange(key, 0, -1))
        elif kind == "stream":
            parts.extend(b for _, fields in conn.xrange(key) for pair in fields.items() for b in pair)
        parts.append(key)
    return "\n".join(p.decode(errors="replace") if isinstance(p, bytes) else str(p) for p in parts)


def test_steps_see_variables_and_secrets_that_appear_nowhere_else(conn, redis_server, pipeline, monkeypatch):
    monkeypatch.setenv("TRAINYARD_SECRET_API_TOKEN", SECRET)
    run = run_here(pipeline, conn=conn, variables={"REGION": "us-east"})
    store = TaskStore(conn)
    task_id = run.state["a"].task_id
    record = store.get(task_id)
    assert run.status == "completed", record.runtime.error
    digest = hashlib.sha256(SECRET.encode()).hexdigest()[:16]
    assert record.outputs == {"region": "us-east", "digest": digest, "same": True, "echoed": "***"}
    assert record.execution.secret_env == {"API_TOKEN": "API_TOKEN"}  # the name, never the value
    log = [line.text for line in logs.read(conn, task_id)]
    assert "region=us-east level=3" in log
    assert "token from env: ***, from the file: ***" in log and "the action got *** in us-east" in log
    # Redis: no key, no value holds it
    assert SECRET not in everything_in_redis(conn)
    # the CLI
    for args in (["task", "show", task_id, "--json"], ["task", "logs", task_id], ["pipeline", "show", run.id]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
    assert "***" in CliRunner().invoke(cli, ["task", "logs", task_id]).output
    # the web app: every GET route, with this run's ids
    app = create_app(redis_server.url)
    token = auth.create_token(conn, "reader", "read")[0]
    seen = {}
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        paths = client.get("/api/openapi.json", headers=headers).json()["paths"]
        for route, operations in sorted(paths.items()):
            if "get" not in operations or route.endswith(("/stream", "/events")):  # live streams never end
                continue
            path = route.replace("{task_id}", task_id).replace("{run_id}", run.id)
            if "{" in path:
                continue
            answer = client.get(path, headers=headers)
            seen[path] = answer.status_code
            assert SECRET not in answer.text, path
        assert "***" in client.get(f"/api/tasks/{task_id}/log", headers=headers).text
    assert sum(code == 200 for code in seen.values()) >= 6, seen


def test_bad_variables_and_missing_secrets(conn, pipeline, monkeypatch):
    with pytest.raises(InvalidInput, match=r"unknown variable\(s\) NOPE \(declared: REGION, LEVEL\)"):
        run_here(pipeline, conn=conn, variables={"NOPE": "1"})
    monkeypatch.delenv("TRAINYARD_SECRET_API_TOKEN", raising=False)
    run = run_here(pipeline, conn=conn)
    assert run.status == "failed"
    error = TaskStore(conn).get(run.state["a"].task_id).runtime.error
    assert "needs secret 'API_TOKEN', which this worker does not hold (set TRAINYARD_SECRET_API_TOKEN)" in error
    with pytest.raises(PipelineFileError) as info:
        load_text("name: x\nsecrets: [A]\njobs:\n  a:\n    steps:\n      - run: echo ${{ secrets.B }} ${{ vars.C }}\n")
    text = str(info.value)
    assert "unknown secret 'B' (known: A)" in text and "unknown variable 'C' (known: none)" in text
    with pytest.raises(PipelineFileError, match="secrets"):
        load_text("name: x\nsecrets: [bad-name]\njobs:\n  a:\n    steps: [{run: 'true'}]\n")


def test_web_api_runs_take_variables(conn, redis_server):
    """Submit and trigger through the HTTP API with this run's variables (no worker: the stored run is read)."""
    from trainyard import Queue
    from trainyard.controller import run_store

    Queue.create("default")
    Queue.create("services")
    text = "name: web-vars\nvariables: {WHO: world}\njobs:\n  a:\n    steps:\n      - run: echo $WHO\n"
    headers = {"Authorization": f"Bearer {auth.create_token(conn, 'admin', 'admin')[0]}"}
    with TestClient(create_app(redis_server.url)) as client:
        submitted = client.post("/api/pipelines", json={"text": text, "variables": {"WHO": "web"}}, headers=headers)
        fired = client.post("/api/pipelines/web-vars/trigger", json={"variables": {"WHO": "hook"}}, headers=headers)
        refused = client.post("/api/pipelines/web-vars/trigger", json={"variables": {"NO": "1"}}, headers=headers)
    seen = []
    for answer in (submitted, fired):
        assert answer.status_code in (200, 201), answer.text
        job = run_store.load(conn, answer.json()["run_id"]).steps["a"].template["configuration"]["trainyard.job"]
        seen.append(job["context"]["vars"])
    assert seen == [{"WHO": "web"}, {"WHO": "hook"}]
    assert refused.status_code == 422 and "unknown variable(s) NO" in refused.json()["error"]["message"]


def test_cli_overrides_variables(conn, tmp_path, run_cli):
    path = tmp_path / "v.yaml"
    path.write_text('variables: {WHO: world}\njobs:\n  a:\n    steps:\n      - run: echo "hello $WHO"\n')
    proc = run_cli("pipeline", "run", str(path), "--var", "WHO=trainyard")
    assert proc.returncode == 0 and "[a] hello trainyard" in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli("pipeline", "run", str(path), "--var", "WHAT=x")
    assert proc.returncode == 1 and proc.stderr.strip() == "error: unknown variable(s) WHAT (declared: WHO)"
    assert json.loads(run_cli("pipeline", "list", "--json", check=True).stdout)[0]["name"] == "v"
