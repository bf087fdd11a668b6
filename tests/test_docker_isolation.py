"""Docker isolation: never privileged, no Docker socket, a non-root user when the image allows
(nobody for a root image, the image's own user otherwise), the task's memory and CPU limits."""

from __future__ import annotations

import pytest
from workerproc import WorkerProcess, log_text

from trainyard import Queue, Task, TaskStatus

pytestmark = pytest.mark.docker

PROBE = (
    'echo "uid=$(id -u)"; '
    'echo "memory=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"; '
    'echo "cpu=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"; '
    "if [ -e /var/run/docker.sock ] || [ -e /run/docker.sock ]; then echo SOCKET-FOUND; else echo no-socket; fi; "
    "grep CapEff /proc/self/status; "
    'touch "$TRAINYARD_RUN_DIR/artifacts/probe" && echo run-folder-writable'
)


def _run(conn, image: str, **extra) -> tuple[Task, str]:
    task = Task.create("probe", command=["sh", "-c", PROBE], docker_image=image, mode="docker", **extra)
    task.enqueue("docker")
    with WorkerProcess("-q", "docker", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=120) == 0, worker.output()
    done = Task.get(task.id)
    assert done.status == TaskStatus.COMPLETED, (done.data.runtime.error, log_text(conn, task.id))
    return done, log_text(conn, task.id)


def test_limits_non_root_and_no_socket(conn, docker_image):
    Queue.create("docker")
    _, text = _run(conn, docker_image, memory="64m", cpus=0.5)
    assert "uid=65534" in text  # busybox declares no user: nobody, not root
    assert "memory=67108864" in text
    assert "cpu=50000 100000" in text or "cpu=50000" in text
    assert "no-socket" in text.splitlines() and "SOCKET-FOUND" not in text.splitlines()
    assert "CapEff:\t0000000000000000" in text  # a non-root user holds no capabilities
    assert "run-folder-writable" in text
    assert "docker: running as 65534:65534, memory 64m, 0.5 CPUs" in text


def test_an_image_user_is_kept(conn, docker_image):
    import docker

    engine = docker.from_env()
    base = engine.containers.create(docker_image, command=["true"])
    try:
        base.commit(repository="trainyard-test-user", tag="latest", changes=["USER 1234"])
    finally:
        base.remove(force=True)
    Queue.create("docker")
    try:
        _, text = _run(conn, "trainyard-test-user:latest")
    finally:
        engine.images.remove("trainyard-test-user:latest", force=True)
    assert "uid=1234" in text and "run-folder-writable" in text


def test_bad_limits_are_refused(run_cli):
    bad = run_cli("task", "create", "--name", "x", "--memory", "lots", "--", "true")
    assert bad.returncode != 0 and "memory 'lots' is not a size such as 512m or 2g" in bad.stderr
    bad = run_cli("task", "create", "--name", "x", "--cpus", "0", "--", "true")
    assert bad.returncode != 0 and "--cpus" in bad.stderr
