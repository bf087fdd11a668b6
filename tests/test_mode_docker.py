"""docker mode against a real Docker engine, with a locally imported busybox image."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import pytest
from gitrepo import make_repo
from workerproc import WorkerProcess, log_text, wait_for_log, wait_status

from trainyard import Queue, Task, TaskStatus

pytestmark = pytest.mark.docker

REPORTS = (
    "echo hello from the container; "
    'mkdir -p "$TRAINYARD_RUN_DIR/artifacts/result"; echo 42 > "$TRAINYARD_RUN_DIR/artifacts/result/answer.txt"; '
    """echo '{"kind": "artifact", "name": "result", "path": "artifacts/result/answer.txt"}' """
    '>> "$TRAINYARD_RUN_DIR/events.jsonl"; '
    """echo '{"kind": "output", "name": "answer", "value": 42}' >> "$TRAINYARD_RUN_DIR/events.jsonl"; """
    'echo "gpus=[$CUDA_VISIBLE_DEVICES] redis=[$TRAINYARD_REDIS_URL] pwd=$(pwd)"'
)


def _containers(task_id: str) -> list:
    import docker

    engine = docker.from_env()
    return engine.containers.list(all=True, filters={"label": f"trainyard.task={task_id}"})


def test_task_runs_in_a_container_and_reports_back(conn, docker_image):
    Queue.create("docker")
    task = Task.create("in-docker", command=["sh", "-c", REPORTS], docker_image=docker_image, mode="docker")
    task.enqueue("docker")
    with WorkerProcess("-q", "docker", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=120) == 0, worker.output()
    record = Task.get(task.id).data
    assert record.status == TaskStatus.COMPLETED, (record.runtime, log_text(conn, task.id))
    text = log_text(conn, task.id)
    assert "hello from the container" in text
    assert "gpus=[] redis=[] pwd=/trainyard/run" in text  # no GPU, no Redis credentials inside
    assert record.outputs == {"answer": 42}
    assert Path(record.artifacts["result"].uri).read_text() == "42\n"
    assert record.runtime.environment == {"mode": "docker", "image": docker_image}
    assert _containers(task.id) == []  # removed after the run


def test_abort_removes_the_container(conn, docker_image):
    Queue.create("docker")
    task = Task.create("sleeper", command=["sh", "-c", "echo CONTAINER-UP; sleep 600"], docker_image=docker_image)
    task.enqueue("docker")
    with WorkerProcess("-q", "docker", "--mode", "docker", "--cpu-only", "--grace", "1"):
        wait_for_log(conn, task.id, "CONTAINER-UP", exact=True)
        assert len(_containers(task.id)) == 1
        container = _containers(task.id)[0]
        assert container.attrs["HostConfig"]["Privileged"] is False
        assert not any("docker.sock" in m["Source"] for m in container.attrs["Mounts"])
        Task.get(task.id).abort()
        assert wait_status(task, timeout=120).status == TaskStatus.ABORTED
        assert _containers(task.id) == []


def test_time_limit_and_worker_death_remove_the_container(conn, docker_image):
    Queue.create("docker")
    slow = Task.create(
        "slow", command=["sh", "-c", "echo UP; sleep 600"], docker_image=docker_image, mode="docker", time_limit=1
    )
    slow.enqueue("docker")
    with WorkerProcess("-q", "docker", "--cpu-only", "--burst", "--grace", "1") as worker:
        assert worker.wait(timeout=120) == 0
    record = Task.get(slow.id).data
    assert record.status == TaskStatus.FAILED and record.runtime.error == "time limit of 1s exceeded"
    assert _containers(slow.id) == []

    orphan = Task.create("orphan", command=["sh", "-c", "echo UP; sleep 600"], docker_image=docker_image, mode="docker")
    orphan.enqueue("docker")
    victim = WorkerProcess("-q", "docker", "--cpu-only", "--name", "docker-victim")
    wait_for_log(conn, orphan.id, "UP", exact=True)
    victim.signal(signal.SIGKILL)
    victim.wait()
    assert len(_containers(orphan.id)) == 1  # the engine keeps it: nobody removed it yet
    with WorkerProcess("-q", "docker", "--cpu-only", "--name", "docker-rescuer"):
        assert wait_status(orphan, timeout=120).status == TaskStatus.FAILED
        _wait_removed(orphan.id)


def test_the_start_up_sweep_judges_only_containers_older_than_the_worker(docker_image, tmp_path):
    """A worker restarted under its predecessor's name sweeps the predecessor's containers in a
    thread while it already runs its first task: a container created after the worker started is
    its own and stays (one was removed before it could start: 'marked for removal')."""
    import docker

    from trainyard.worker.containers import LABEL_RUNS, LABEL_TASK, LABEL_WORKER, remove_containers_of

    engine = docker.from_env()
    runs = str(tmp_path / "runs")
    labels = {LABEL_RUNS: runs, LABEL_WORKER: "same-name", LABEL_TASK: "sweep-test"}
    container = engine.containers.create(docker_image, ["sleep", "60"], labels=labels)
    try:
        created = float(engine.api.containers(all=True, filters={"id": container.id})[0]["Created"])
        assert remove_containers_of(runs, lambda name: name == "same-name", created + 0.999) == 0  # may be younger
        assert len(engine.containers.list(all=True, filters={"label": f"{LABEL_RUNS}={runs}"})) == 1
        assert remove_containers_of(runs, lambda name: False, created + 1) == 0  # older, its worker alive
        assert remove_containers_of(runs, lambda name: name == "same-name", created + 1) == 1  # older, dead
        assert engine.containers.list(all=True, filters={"label": f"{LABEL_RUNS}={runs}"}) == []
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def _wait_removed(task_id: str, timeout: float = 60) -> None:
    """The reaper removes the container right after it failed the task; wait on the engine's events."""
    import docker

    engine = docker.from_env()
    if not _containers(task_id):
        return
    for event in engine.events(
        decode=True,
        filters={"label": f"trainyard.task={task_id}", "event": "destroy"},
        until=int(time.time() + timeout),
    ):
        if event:
            break
    assert _containers(task_id) == []


def test_setup_script_requirements_free_and_source_mounted(conn, docker_image, tmp_path):
    repo = tmp_path / "repo"
    commit = make_repo(repo, {"tools/run.sh": 'echo "run.sh at $(pwd) says $(cat /tmp/setup-done)"\n'})
    Queue.create("docker")
    task = Task.create(
        "from-git",
        command=["sh", "run.sh"],
        repository=str(repo),
        commit=commit,
        working_dir="tools",
        docker_image=docker_image,
        mode="docker",
        docker_setup_script="echo ready > /tmp/setup-done",
    )
    task.enqueue("docker")
    with WorkerProcess("-q", "docker", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=120) == 0
    record = Task.get(task.id).data
    assert record.status == TaskStatus.COMPLETED, log_text(conn, task.id)
    assert "run.sh at /workspace/tools says ready" in log_text(conn, task.id)


def test_missing_image_fails_the_task_with_the_reason(conn, docker_image):
    Queue.create("docker")
    bad = Task.create("no-image", command=["true"], docker_image="trainyard-test/does-not-exist:1", mode="docker")
    bad.enqueue("docker")
    good = Task.create("after", command=["sh", "-c", "echo fine"], docker_image=docker_image, mode="docker")
    good.enqueue("docker")
    with WorkerProcess("-q", "docker", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=120) == 0
    failed = Task.get(bad.id).data
    assert failed.status == TaskStatus.FAILED
    assert (
        "docker image trainyard-test/does-not-exist:1 is not on this worker and cannot be pulled"
        in failed.runtime.error
    )
    assert Task.get(good.id).status == TaskStatus.COMPLETED  # the worker carries on


def test_gpus_become_a_device_request(tmp_path):
    """No GPU here: the container spec is checked, not run (the GPU machine script runs it)."""
    from trainyard.queues.record import TaskRecord
    from trainyard.worker import modes
    from trainyard.worker.modes import Job, ModeSettings

    record = TaskRecord(
        id="t1",
        name="g",
        script={"command": ["nvidia-smi"]},
        container={"image": "cuda:12"},
        runtime={"gpus": ["1", "3"]},
    )  # the GPUs its worker gave it
    settings = ModeSettings(home=tmp_path, worker="w", default_mode="docker")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = modes.get("docker").prepare(Job(record, run_dir, None, None, settings)).docker
    assert spec.gpus == [1, 3] and spec.env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert spec.env["NVIDIA_VISIBLE_DEVICES"] == "1,3" and "TRAINYARD_REDIS_URL" not in spec.env
    assert json.loads(json.dumps(spec.labels)) == {
        "trainyard.task": "t1",
        "trainyard.worker": "w",
        "trainyard.runs": str(tmp_path),  # the worker's runs folder: leftovers are judged by their own fleet
    }
