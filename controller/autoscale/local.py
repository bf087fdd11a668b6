"""Local drivers: worker processes and worker containers (a real Docker engine) on this machine."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
from pathlib import Path

import psutil

from ...queues.scalestore import Resource
from .drivers import worker_argv

LABEL = "trainyard.autoscale"  # the worker's name
FLEET_LABEL = "trainyard.autoscale.fleet"  # which Redis it serves (a hash): one engine, several installations
STOP_GRACE_S = 20.0  # a drained worker has exited already; others get this long after SIGQUIT


class ProcessDriver:
    """Each machine is a `trainyard worker` process in its own session, its output in a log file."""

    def __init__(self, home: Path, redis_url: str):
        self.logs = Path(home) / "autoscale"
        self.redis_url = redis_url
        self._children: dict[str, subprocess.Popen] = {}

    def spin_up(self, resource: Resource, worker: str, queue: str) -> str:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **resource.env}
        if self.redis_url:
            env["TRAINYARD_REDIS_URL"] = self.redis_url
        with open(self.logs / f"{worker}.log", "ab") as log:
            proc = subprocess.Popen(
                worker_argv(resource, worker, queue),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # outlives a restart of the service
            )
        cloud_id = f"{proc.pid}@{psutil.Process(proc.pid).create_time():.3f}@{worker}"
        self._children[cloud_id] = proc
        return cloud_id

    def _process(self, cloud_id: str) -> psutil.Process | None:
        pid, created, _ = cloud_id.split("@", 2)
        proc = self._children.get(cloud_id)
        if proc is not None and proc.poll() is not None:
            return None
        try:
            found = psutil.Process(int(pid))
            if f"{found.create_time():.3f}" != created or found.status() == psutil.STATUS_ZOMBIE:
                return None
            return found
        except psutil.NoSuchProcess:
            return None

    def spin_down(self, cloud_id: str) -> None:
        found = self._process(cloud_id)
        if found is None:
            self._children.pop(cloud_id, None)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(found.pid, signal.SIGQUIT)  # stop: a task still running goes back to its queue
        self._reap(cloud_id, found)

    def _reap(self, cloud_id: str, found: psutil.Process) -> None:
        try:
            found.wait(timeout=STOP_GRACE_S)
        except psutil.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(found.pid, signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
        proc = self._children.pop(cloud_id, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_GRACE_S)

    def list(self) -> list[str]:
        for cloud_id, proc in list(self._children.items()):
            if proc.poll() is not None:
                self._children.pop(cloud_id)
        return [c for c in self._children if self._process(c) is not None]

    def alive(self, cloud_id: str) -> bool:
        return self._process(cloud_id) is not None

    def console_log(self, cloud_id: str) -> str:
        worker = cloud_id.split("@", 2)[2]
        path = self.logs / f"{worker}.log"
        return path.read_bytes()[-8192:].decode(errors="replace") if path.exists() else ""


class DockerDriver:
    """Each machine is a container running `trainyard worker` (labelled, named after the worker)."""

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.fleet = hashlib.sha256(redis_url.encode()).hexdigest()[:16]
        self._engine = None

    def engine(self):
        if self._engine is None:
            import docker

            self._engine = docker.from_env(timeout=60)
        return self._engine

    def spin_up(self, resource: Resource, worker: str, queue: str) -> str:
        env = {"TRAINYARD_HOME": "/tmp/trainyard", **resource.env}
        if self.redis_url:
            env["TRAINYARD_REDIS_URL"] = self.redis_url
        try:
            container = self._run(resource, worker, queue, env)
        except Exception:
            self.spin_down(worker)  # made but not reported (a time-out): not left behind
            raise
        return container.id

    def _run(self, resource: Resource, worker: str, queue: str, env: dict[str, str]):
        return self.engine().containers.run(
            resource.image,
            worker_argv(resource, worker, queue),
            name=worker,
            detach=True,
            labels={LABEL: worker, FLEET_LABEL: self.fleet},
            network_mode=resource.network,
            environment=env,
            volumes={host: {"bind": inside, "mode": "ro"} for host, inside in resource.volumes.items()},
        )

    def spin_down(self, cloud_id: str) -> None:
        import docker

        try:
            container = self.engine().containers.get(cloud_id)
            container.stop(timeout=int(STOP_GRACE_S))
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:  # removal already under way
            pass

    def list(self) -> list[str]:
        return [c.id for c in self.engine().containers.list(filters={"label": f"{FLEET_LABEL}={self.fleet}"})]

    def alive(self, cloud_id: str) -> bool:
        return cloud_id in self.list()

    def console_log(self, cloud_id: str) -> str:
        import docker

        try:
            return self.engine().containers.get(cloud_id).logs(tail=200).decode(errors="replace")
        except docker.errors.NotFound:
            return ""
