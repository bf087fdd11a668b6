"""Secrets: a unique secret planted in every place a secret can be (a parameter and an env entry
marked secret, the git token, the registry password, the Redis password of an ACL user) must reach
the task process where it belongs and appear on no surface: Redis (every key), the artifact store,
CLI output, worker logs."""

from __future__ import annotations

import json
import os
import secrets
import sys
import textwrap
from pathlib import Path

import redis
from redis_server import RedisServer
from workerproc import WorkerProcess, log_text, wait_status

from trainyard import Queue, Task, TaskStatus
from trainyard.connection import reset_connections
from trainyard.queues.params import secret_ref
from trainyard.queues.record import TaskType

TASK = textwrap.dedent(
    """
    import json, os, sys
    from trainyard import current_task
    task = current_task()
    token = task.get_parameter("Args/token")
    seen = {"param": token, "argv": sys.argv[1:], "env": os.environ.get("API_KEY"), "environ": dict(os.environ)}
    with open(os.environ["SEEN_FILE"], "w") as out:
        json.dump(seen, out)
    print("the token is", token, "and the key is", os.environ.get("API_KEY"), flush=True)
    print("worker env:", sorted(k for k in os.environ if k.startswith("TRAINYARD")), flush=True)
    task.set_output("leak", {"token": token, "nested": [os.environ.get("API_KEY")]})
    raise SystemExit(f"failing on purpose with {token}")
    """
)

CONTROLLER = textwrap.dedent(
    """
    import os
    print("my redis url:", os.environ.get("TRAINYARD_REDIS_URL"), flush=True)
    """
)


def _dump_redis(conn: redis.Redis) -> bytes:
    """Every key and every value in the database, whatever its type."""
    out = []
    for key in conn.scan_iter(count=1000):
        kind = conn.type(key).decode()
        out.append(key)
        if kind == "string":
            out.append(conn.get(key) or b"")
        elif kind == "hash":
            out += [b"%s=%s" % kv for kv in conn.hgetall(key).items()]
        elif kind == "list":
            out += conn.lrange(key, 0, -1)
        elif kind == "set":
            out += list(conn.smembers(key))
        elif kind == "zset":
            out += conn.zrange(key, 0, -1)
        elif kind == "stream":
            for _, fields in conn.xrange(key):
                out += [b"%s=%s" % kv for kv in fields.items()]
    return b"\n".join(out)


def _files(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_planted_secrets_reach_the_task_and_no_surface(tmp_path, monkeypatch, run_cli):
    plant = {name: f"{name}-{secrets.token_hex(8)}" for name in ("param", "env", "git", "registry", "redis")}
    server = RedisServer(tmp_path / "redis", password=f"admin-{secrets.token_hex(8)}").start()
    try:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "trainer", "on", f">{plant['redis']}", "~*", "&*", "+@all")
        url = f"redis://trainer:{plant['redis']}@127.0.0.1:{server.port}/0"
        monkeypatch.setenv("TRAINYARD_REDIS_URL", url)
        reset_connections()
        Queue.create("secure")
        script = tmp_path / "leaky.py"
        script.write_text(TASK)
        task = Task.create(
            "leaky",
            script=script,
            detect_repository=False,
            parameters={"Args/token": secret_ref("paramtok")},
            env={"SEEN_FILE": str(tmp_path / "seen.json")},
            secret_env={"API_KEY": "envtok"},
        )
        task.enqueue("secure")
        controller_script = tmp_path / "controller.py"
        controller_script.write_text(CONTROLLER)
        controller = Task.create(
            "controller",
            command=[sys.executable, str(controller_script)],
            task_type=TaskType.CONTROLLER,
        )
        controller.enqueue("secure")
        # a repository URL with a token in it keeps no token (the worker's own token is used)
        with_creds = Task.create(
            "from-git",
            command=["true"],
            repository=f"https://bot:{plant['git']}@git.invalid/team/repo.git",
            detect_repository=False,
        )
        worker_env = {
            "TRAINYARD_SECRET_PARAMTOK": plant["param"],
            "TRAINYARD_SECRET_ENVTOK": plant["env"],
            "TRAINYARD_GIT_USER": "bot",
            "TRAINYARD_GIT_TOKEN": plant["git"],
            "TRAINYARD_REGISTRY_USER": "bot",
            "TRAINYARD_REGISTRY_PASSWORD": plant["registry"],
        }
        with WorkerProcess("-q", "secure", "--cpu-only", "--burst", env=worker_env) as worker:
            assert worker.wait(timeout=120) == 0, worker.output()
        worker_log = worker.output()
        conn = server.client()
        done = wait_status(task, TaskStatus.FAILED)
        assert wait_status(controller, TaskStatus.COMPLETED).status == TaskStatus.COMPLETED

        # the task process got the real values, and nothing of the worker's credentials
        seen = json.loads((tmp_path / "seen.json").read_text())
        assert seen["param"] == plant["param"] and seen["env"] == plant["env"]
        assert seen["argv"] == ["--token", plant["param"]]
        environ = json.dumps(seen["environ"])
        for name in ("git", "registry", "redis"):
            assert plant[name] not in environ, name
        assert not [k for k in seen["environ"] if k.startswith("TRAINYARD_SECRET_")]
        # what the task printed, output and failed with arrives masked
        text = log_text(conn, task.id)
        assert "the token is *** and the key is ***" in text
        assert done.data.outputs["leak"] == {"token": "***", "nested": ["***"]}
        # stdout and stderr are two pipes: their lines may interleave either way in the tail
        assert any("failing on purpose with ***" in line for line in done.data.runtime.log_tail)
        assert "failing on purpose with ***" in (done.data.runtime.error or "")
        assert "my redis url: redis://trainer:***@" in log_text(conn, controller.id)
        assert with_creds.data.script.repository == "https://git.invalid/team/repo.git"

        cli_env = {"TRAINYARD_REDIS_URL": url}
        cli = [
            run_cli(*args, env=cli_env, check=True).stdout
            for args in (
                ("task", "show", task.id),
                ("task", "show", task.id, "--json"),
                ("task", "show", controller.id, "--json"),
                ("task", "show", with_creds.id, "--json"),
                ("task", "logs", task.id),
                ("task", "logs", controller.id),
                ("task", "list", "--json"),
                ("worker", "list"),
                ("queue", "show", "secure"),
            )
        ]
        assert '"$secret": "paramtok"' in cli[1] and '"API_KEY": "envtok"' in cli[1]
        bad = run_cli("task", "list", env={"TRAINYARD_REDIS_URL": url.replace(plant["redis"], plant["redis"] + "x")})
        assert bad.returncode != 0 and "authentication failed" in bad.stderr

        surfaces = {
            "redis": _dump_redis(conn).decode("utf-8", "replace"),
            "artifacts": _files(Path(os.environ["TRAINYARD_HOME"]) / "artifacts").decode("utf-8", "replace"),
            "cli": "\n".join(cli) + bad.stdout + bad.stderr,
            "worker log": worker_log,
        }
        assert "***" in surfaces["artifacts"]  # the stored log file is there, masked
        found = {(name, where) for name, value in plant.items() for where, text in surfaces.items() if value in text}
        assert found == set()
    finally:
        reset_connections()
        server.cleanup()


def test_a_secret_the_worker_lacks_fails_the_task_by_name(tmp_path):
    Queue.create("secure")
    task = Task.create("needs", command=["true"], secret_env={"API_KEY": "nope"})
    task.enqueue("secure")
    with WorkerProcess("-q", "secure", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=60) == 0, worker.output()
    record = Task.get(task.id).data
    assert record.status == TaskStatus.FAILED
    assert (
        record.runtime.error
        == "env API_KEY needs secret 'nope', which this worker does not hold (set TRAINYARD_SECRET_NOPE)"
    )
