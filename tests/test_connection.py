"""Connecting by URL: unix sockets, ACL users, and one clear line when it cannot."""

from __future__ import annotations

import json

from redis_server import RedisServer


def test_unix_socket_url(tmp_path, run_cli):
    sock = tmp_path / "r.sock"
    server = RedisServer(tmp_path / "unix", unixsocket=sock).start()
    try:
        url = f"unix://{sock}?db=0"
        task_id = run_cli(
            "task", "create", "--name", "over-unix", "--", "true", env={"TRAINYARD_REDIS_URL": url}, check=True
        ).stdout.strip()
        assert server.client().exists(f"ty:task:{task_id}")
        status = json.loads(run_cli("status", "--json", env={"TRAINYARD_REDIS_URL": url}, check=True).stdout)
        assert status["tasks"] == 1 and status["redis"] == url
    finally:
        server.cleanup()


def test_acl_user_in_the_url(redis_server, run_cli):
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all")
    try:
        url = redis_server.url.replace(":test-secret-pw@", "alice:alice-pw@")
        proc = run_cli("queue", "create", "acl-queue", env={"TRAINYARD_REDIS_URL": url}, check=True)
        assert "created" in proc.stdout
        wrong = run_cli("queue", "list", env={"TRAINYARD_REDIS_URL": url.replace("alice-pw", "nope")})
        assert wrong.returncode == 3 and "authentication failed" in wrong.stderr
        assert "nope" not in wrong.stderr and "alice:***@" in wrong.stderr
    finally:
        admin.execute_command("ACL", "DELUSER", "alice")
