"""A real Redis primary, its replica and three ``redis-sentinel`` processes (quorum 2), on loopback:
what tests/test_sentinel.py and tests/test_replication.py fail over and pause."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
from pathlib import Path

import redis
from redis_server import free_port

from trainyard.embedded import redis_server_binary

PASSWORD = "s3nt-pw"
SERVICE = "tymaster"


def until(check, what: str, timeout: float = 60) -> None:
    """Wait for a condition on the servers (they announce nothing we could block on)."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not done.wait(0.05):
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass
        raise AssertionError(f"timed out waiting for {what}")
    finally:
        deadline.cancel()


class Cluster:
    """Primary + replica (AOF, password) and, with ``start()``, three sentinels."""

    def __init__(self, root: Path):
        self.root, self.procs = root, {}
        self.ports = {"primary": free_port(), "replica": free_port()}
        self.sentinels = [free_port() for _ in range(3)]

    @property
    def primary(self) -> int:
        return self.ports["primary"]

    @property
    def replica(self) -> int:
        return self.ports["replica"]

    def _spawn(self, name: str, args: list[str]) -> None:
        """Start a server or sentinel; its output goes to ``<root>/<name>.log`` (what a failing
        test leaves to read: elections, role changes, syncs)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.log", "a") as log:
            self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def _server(self, name: str, extra: list[str]) -> None:
        folder = self.root / name
        shutil.rmtree(folder, ignore_errors=True)  # a server brought back starts empty, as a new replica
        folder.mkdir(parents=True)
        args = [redis_server_binary(), "--port", str(self.ports[name]), "--bind", "127.0.0.1", "--dir", str(folder)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"]
        args += ["--requirepass", PASSWORD, "--masterauth", PASSWORD, *extra]
        self._spawn(name, args)

    def client(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], password=PASSWORD)

    def replicate(self, name: str, of: str) -> None:
        """Start server ``name`` (empty) as a replica of ``of`` and wait for its link."""
        self._server(name, ["--replicaof", "127.0.0.1", str(self.ports[of])])
        server = self.client(name)
        until(lambda: server.info("replication").get("master_link_status") == "up", f"{name}'s replication link", 120)

    def start_servers(self) -> Cluster:
        self._server("primary", [])
        self.replicate("replica", "primary")
        return self

    def start(self) -> Cluster:
        self.start_servers()
        for i, port in enumerate(self.sentinels):
            conf = self.root / f"sentinel{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {self.root}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                f"sentinel auth-pass {SERVICE} {PASSWORD}\n"
                # not less: a primary slowed by load (its fork for a rejoining replica's full sync)
                # was taken for dead, and that second failover, before the replica had caught up,
                # lost acknowledged changes
                f"sentinel down-after-milliseconds {SERVICE} 3000\n"
                f"sentinel failover-timeout {SERVICE} 4000\n"
            )
            self._spawn(f"sentinel{i}", ["redis-sentinel", str(conf)])
        for port in self.sentinels:
            s = redis.Redis(port=port)
            until(
                lambda s=s: (m := s.sentinel_master(SERVICE))["num-other-sentinels"] == 2 and m["num-slaves"] == 1,
                "the sentinels to know each other and the replica",
            )
        return self

    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://:{PASSWORD}@{hosts}/{SERVICE}/0"

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def kill_primary(self) -> None:
        self.kill("primary")

    def promoted(self) -> str:
        """Which server the sentinels name as the primary now."""
        port = redis.Redis(port=self.sentinels[0]).sentinel_get_master_addr_by_name(SERVICE)[1]
        return next(name for name, p in self.ports.items() if p == port)

    def stop(self) -> None:
        """SIGTERM each (the last started first), SIGKILL what has not exited 5 s later: a replica
        that was paused was seen to ignore SIGTERM, and nothing of these servers is kept."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused one too
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
