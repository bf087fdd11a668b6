"""docker mode: the task runs in a container named and labelled after it, through the Docker SDK.

The task's code folder and run folder are mounted in, the pip/uv caches too; its GPUs become a
device request for exactly those GPUs. No trainyard install is needed in the image: the task
reports through the mounted run folder (the standard-library-only in-task runtime is mounted
read-only and put on its PYTHONPATH, see tasklib.py). Containers are never privileged, never get
the Docker socket, run as a non-root user when the image allows (``container_user``), and get the
task's memory and CPU limits.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..queues import config
from .launch import PrepareError

RUN_MOUNT = "/trainyard/run"
CODE_MOUNT = "/workspace"
CACHE_MOUNT = "/trainyard/cache"
LABEL_TASK = "trainyard.task"
LABEL_WORKER = "trainyard.worker"
LABEL_RUNS = "trainyard.runs"  # the runs folder of the worker's home: a leftover is judged by its own fleet
NOBODY = 65534


@dataclass
class DockerSpec:
    image: str
    name: str
    argv: list[str]
    env: dict[str, str]
    code_dir: Path | None
    run_dir: Path
    working_dir: str = CODE_MOUNT
    setup_script: str | None = None
    extra_args: list[str] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    network: str | None = None
    memory: str | None = None  # docker's notation: 512m, 2g
    cpus: float | None = None
    root_setup: bool = False  # the task installs packages or runs a setup script: it needs the image's user
    mounts: dict[str, str] = field(default_factory=dict)  # host folder -> read-only mount point (the runtime)


def client():
    """A Docker client, or PrepareError naming why none answers."""
    try:
        import docker

        engine = docker.from_env(timeout=30)
        engine.ping()
        return engine
    except Exception as exc:  # docker.errors.DockerException and connection errors
        raise PrepareError(f"docker mode needs a Docker engine, and none answers: {_short(exc)}") from None


def default_network(engine) -> str:
    """The engine's bridge network when it has one, else the host's network."""
    names = {n.name for n in engine.networks.list()}
    return "bridge" if "bridge" in names else "host"


def registry_auth() -> dict[str, str] | None:
    """Registry credentials for pulls, from the worker's TRAINYARD_REGISTRY_USER/_PASSWORD (never
    given to tasks, masked in their logs)."""
    settings = config.current()
    user, password = settings.registry_user, settings.registry_password
    return {"username": user or "", "password": password} if password else None


def ensure_image(engine, image: str, log):
    """Use a local image, or pull it; a missing image fails with the reason. Returns the image."""
    import docker

    try:
        found = engine.images.get(image)
        log(f"docker: image {image} found locally")
        return found
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise PrepareError(f"docker: cannot inspect image {image}: {_short(exc)}") from None
    log(f"docker: pulling {image}")
    try:
        return engine.images.pull(image, auth_config=registry_auth())
    except Exception as exc:
        raise PrepareError(f"docker image {image} is not on this worker and cannot be pulled: {_short(exc)}") from None


def image_user(image) -> str:
    """The USER an image declares ("" when none: root)."""
    return ((getattr(image, "attrs", None) or {}).get("Config") or {}).get("User") or ""


def container_user(image, spec: DockerSpec) -> str | None:
    """Who the task runs as: the image's own user when it names a non-root one; else nobody
    (65534), unless the task installs packages or runs a setup script (then the image's user,
    root, is kept: pip must write to the image). None: the image's default."""
    configured = image_user(image)
    if configured and configured.split(":")[0] not in ("root", "0"):
        return None
    if spec.root_setup:
        return None
    if os.getuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"  # the worker's own user already owns the run folder
    return f"{NOBODY}:{NOBODY}"


def hand_over(spec: DockerSpec, user: str | None, image) -> None:
    """Let the task's user write its run folder (and its checkout, when that lies inside it)."""
    if os.getuid() != 0:
        return
    name = (user or image_user(image)).split(":")[0]
    folders = [spec.run_dir]
    if spec.code_dir is not None and spec.run_dir in spec.code_dir.parents:
        folders.append(spec.code_dir)
    if not name or name in ("root", "0"):
        return
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for path in [root, *(os.path.join(root, n) for n in dirs + files)]:
                with contextlib.suppress(OSError):
                    if name.isdigit():
                        os.lchown(path, int(name), int(name))
                    elif not os.path.islink(path):  # a user known only by name inside the image
                        extra = 0o777 if os.path.isdir(path) else 0o666
                        os.chmod(path, os.stat(path).st_mode | extra)


class DockerLaunch:
    """A started container; ``pgid`` is None (the container is the unit that gets ended)."""

    pgid = None

    def __init__(self, spec: DockerSpec, log):
        import docker

        self.spec = spec
        self.engine = client()
        image = ensure_image(self.engine, spec.image, log)
        user = container_user(image, spec)
        hand_over(spec, user, image)
        log(
            f"docker: running as {user or 'the image user'}"
            + (f", memory {spec.memory}" if spec.memory else "")
            + (f", {spec.cpus:g} CPUs" if spec.cpus else "")
        )
        command = list(spec.argv)
        entrypoint = None
        if spec.setup_script:
            entrypoint = ["/bin/sh", "-c", "set -e\n" + spec.setup_script + '\nexec "$@"', "trainyard-setup"]
        volumes = {str(spec.run_dir): {"bind": RUN_MOUNT, "mode": "rw"}}
        if spec.code_dir is not None:
            volumes[str(spec.code_dir)] = {"bind": CODE_MOUNT, "mode": "rw"}
        if spec.cache_dir is not None:
            volumes[str(spec.cache_dir)] = {"bind": CACHE_MOUNT, "mode": "rw"}
        for host, bind in spec.mounts.items():
            volumes[host] = {"bind": bind, "mode": "ro"}
        requests = []
        if spec.gpus:
            requests = [docker.types.DeviceRequest(device_ids=[str(g) for g in spec.gpus], capabilities=[["gpu"]])]
        with contextlib.suppress(docker.errors.NotFound):
            self.engine.containers.get(spec.name).remove(force=True)  # a leftover of a lost attempt
        network = spec.network or default_network(self.engine)
        try:
            self.container = self.engine.containers.create(
                spec.image,
                command=command,
                entrypoint=entrypoint,
                name=spec.name,
                labels=spec.labels,
                environment=spec.env,
                volumes=volumes,
                working_dir=spec.working_dir,
                device_requests=requests,
                privileged=False,
                user=user,
                mem_limit=spec.memory,
                memswap_limit=spec.memory,  # no swap beyond the limit
                nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
                pids_limit=4096,
                network_mode=network,
                security_opt=["no-new-privileges"],
                stdin_open=False,
                tty=False,
                detach=True,
            )
            # attach before start, so not a byte of output is missed
            attached = self.container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
            self.container.start()
        except Exception as exc:
            self.cleanup()
            raise PrepareError(f"docker: container for {spec.image} cannot start: {_short(exc)}") from None
        self._out: queue.Queue = queue.Queue()
        self._err: queue.Queue = queue.Queue()
        threading.Thread(target=self._demux, args=(attached,), daemon=True).start()

    def _demux(self, attached) -> None:
        try:
            for out, err in attached:
                if out:
                    self._out.put(out)
                if err:
                    self._err.put(err)
        except Exception:  # the container went away
            pass
        finally:
            self._out.put(None)
            self._err.put(None)

    def streams(self) -> list[tuple[str, Iterator[bytes]]]:
        return [("out", _drain(self._out)), ("err", _drain(self._err))]

    def wait(self, timeout: float | None) -> int:
        try:
            result = self.container.wait(timeout=timeout) if timeout else self.container.wait()
        except Exception as exc:
            if "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower():
                raise subprocess.TimeoutExpired(self.spec.argv, timeout or 0) from None
            raise
        return int(result.get("StatusCode", 1))

    def terminate(self, grace_s: float, exited: threading.Event) -> None:
        with contextlib.suppress(Exception):
            self.container.stop(timeout=max(1, int(round(grace_s))))

    def cleanup(self) -> None:
        container = getattr(self, "container", None)
        try:
            if container is not None:
                container.remove(force=True)
            else:
                self.engine.containers.get(self.spec.name).remove(force=True)
        except Exception:  # already gone
            pass


def _drain(q: queue.Queue) -> Iterator[bytes]:
    while True:
        item = q.get()
        if item is None:
            return
        yield item


def remove_task_containers(dead: set[tuple[str, str]]) -> int:
    """Remove the containers of (task id, worker) pairs whose worker died (the reaper on this host)."""
    if not dead:
        return 0
    try:
        engine = client()
    except PrepareError:
        return 0
    removed = 0
    for container in engine.containers.list(all=True, filters={"label": LABEL_TASK}):
        if (container.labels.get(LABEL_TASK), container.labels.get(LABEL_WORKER)) in dead:
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed += 1
    return removed


def remove_containers_of(runs_dir: str, dead, created_before: float) -> int:
    """Remove containers that workers of this home (``runs_dir``) left when they died: ``dead(name)``
    says whether a worker is gone. Called when a worker starts on this host: only containers created
    before ``created_before`` (its start) are judged, so a predecessor under the same name loses its
    containers and the new worker's first task, started meanwhile, keeps its own."""
    try:
        engine = client()
    except PrepareError:
        return 0
    removed = 0
    for found in engine.api.containers(all=True, filters={"label": f"{LABEL_RUNS}={runs_dir}"}):
        created = float(found.get("Created") or 0)  # whole seconds: the container is older than created + 1
        if created + 1 <= created_before and dead((found.get("Labels") or {}).get(LABEL_WORKER, "")):
            with contextlib.suppress(Exception):
                engine.api.remove_container(found["Id"], force=True)
                removed += 1
    return removed


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
