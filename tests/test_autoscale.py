"""The autoscaler with real worker processes, real worker containers (Docker), and EC2 through a
stand-in (moto: EC2 cannot exist here)."""

from __future__ import annotations

import json
import sys
import time

import pytest
from workerproc import FAST, ServiceProcess, wait_status

from trainyard import Queue, Task, TaskStatus
from trainyard.controller.autoscale.local import ProcessDriver
from trainyard.controller.autoscale.service import Autoscaler
from trainyard.queues import keys, scalestore, services, workers
from trainyard.queues.scalestore import ScalerConfig

SERVICE = "autoscale.service"
PYTHON_WORKER = [sys.executable, "-m", "trainyard"]


def _config(**overrides) -> ScalerConfig:
    data = {
        "resources": {
            "local": {"driver": "process", "worker_command": PYTHON_WORKER, "worker_args": ["--cpu-only"], "env": FAST}
        },
        "queues": {"cpu": [{"resource": "local", "max": 3}]},
        "idle_timeout_s": 1.0,
    }
    data.update(overrides)
    return ScalerConfig.model_validate(data)


def wait_scaler(conn, predicate, timeout: float = 120) -> list[dict]:
    """Until ``predicate(instances, decisions)`` holds; woken by each decision the autoscaler logs."""
    deadline = time.monotonic() + timeout
    cursor = "0-0"
    while True:
        found = scalestore.decisions(conn, 10_000)
        if predicate(scalestore.instances(conn), found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"autoscaler: condition not met; decisions {found[:10]}")
        reply = conn.xread({keys.SCALE_DECISIONS: cursor, keys.EVENTS: "$"}, block=1000, count=100)
        for stream, entries in reply or []:
            if stream.decode() == keys.SCALE_DECISIONS:
                cursor = entries[-1][0]


@pytest.fixture
def cleanup(conn, tmp_path):
    """Whatever a failing test leaves: the instances' processes are stopped."""
    yield
    driver = ProcessDriver(tmp_path, "")
    for inst in scalestore.instances(conn):
        if inst.driver == "process" and inst.cloud_id:
            driver.spin_down(inst.cloud_id)


def _most_at_once(decisions: list[dict]) -> int:
    running = most = 0
    for d in reversed(decisions):  # oldest first
        if d["action"] == "spin up":
            running += 1
        elif d["action"] in ("stopped", "lost", "gave up", "failed"):
            running -= 1
        most = max(most, running)
    return most


def test_twenty_tasks_start_workers_up_to_the_maximum_which_drain_and_stop_when_idle(conn, cleanup):
    Queue.create("cpu")
    scalestore.configure(conn, _config())
    tasks = [Task.create(f"t{i}", command=["python", "-c", "pass"]).enqueue("cpu") for i in range(20)]
    with ServiceProcess(SERVICE) as service:
        for task in tasks:
            assert wait_status(task, timeout=180).status == TaskStatus.COMPLETED
        decisions = wait_scaler(conn, lambda insts, d: not insts and any(x["action"] == "stopped" for x in d))
        assert services.running(conn, "autoscaler")[0]["leading"]
        assert service.stop() == 0
    actions = [d["action"] for d in decisions]
    assert actions.count("spin up") >= 1 and _most_at_once(decisions) <= 3
    assert actions.count("drain") == actions.count("stopped") == actions.count("spin up")
    assert "20 task(s) waiting" in next(d["reason"] for d in reversed(decisions) if d["action"] == "spin up")
    assert not workers.list_workers(conn) and not conn.smembers(keys.DRAINING)


def test_tasks_queued_while_workers_drain_are_never_lost(conn, cleanup):
    """Races the scale-down with enqueues: an idle timeout of 0 drains a worker the moment it is
    idle, and each new task arrives right after the previous one ended, often mid-drain."""
    Queue.create("cpu")
    scalestore.configure(conn, _config(idle_timeout_s=0.0, queues={"cpu": [{"resource": "local", "max": 1}]}))
    done = []
    with ServiceProcess(SERVICE):
        for i in range(12):
            task = Task.create(f"r{i}", command=["python", "-c", "pass"]).enqueue("cpu")
            done.append(wait_status(task, timeout=180))
        decisions = wait_scaler(conn, lambda insts, d: not insts)
    assert all(t.status == TaskStatus.COMPLETED for t in done)
    assert sum(1 for d in decisions if d["action"] == "drain") >= 2


def test_a_worker_that_never_registers_is_given_up_and_its_machine_stopped(conn, cleanup):
    Queue.create("cpu")
    silent = [sys.executable, "-c", "import time; time.sleep(600)"]  # a machine whose worker never comes up
    config = _config(spin_up_timeout_s=1.0)
    config.resources["local"].worker_command = silent
    config.queues["cpu"][0].max = 1
    scalestore.configure(conn, config)
    task = Task.create("waits", command=["true"]).enqueue("cpu")
    drivers = {"process": ProcessDriver(conn_home(), "")}
    scaler = Autoscaler(conn, drivers, name="test")
    scaler.reconcile(time.time())
    [inst] = scalestore.instances(conn)
    assert drivers["process"].alive(inst.cloud_id)
    scaler.reconcile(time.time() + 2.0)
    assert drivers["process"].alive(inst.cloud_id) is False
    gave_up = [d for d in scalestore.decisions(conn) if d["action"] == "gave up"]
    assert gave_up and "did not register in 1s" in gave_up[0]["reason"]
    assert Task.get(task.id).status == TaskStatus.QUEUED  # still waiting for a worker that does come up
    for leftover in scalestore.instances(conn):
        drivers["process"].spin_down(leftover.cloud_id)


def conn_home():
    import os
    from pathlib import Path

    return Path(os.environ["TRAINYARD_HOME"])


def test_a_machine_no_instance_names_is_stopped_by_the_sweep(conn, cleanup):
    """A machine made by a start call that failed after making it (a time-out) has no record."""
    Queue.create("cpu")
    config = _config()
    scalestore.configure(conn, config)
    driver = ProcessDriver(conn_home(), "")
    orphan = driver.spin_up(config.resources["local"].model_copy(update={"worker_command": SLEEPER}), "ghost", "cpu")
    scaler = Autoscaler(conn, {"process": driver}, name="test")
    scaler.sweep(config, [])
    assert not driver.alive(orphan)
    [decision] = scalestore.decisions(conn)
    assert decision["action"] == "orphan stopped" and orphan in decision["reason"]


SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_state_survives_a_restart_of_the_service(conn, cleanup):
    Queue.create("cpu")
    scalestore.configure(conn, _config(idle_timeout_s=0.0, queues={"cpu": [{"resource": "local", "max": 1}]}))
    task = Task.create("once", command=["python", "-c", "pass"]).enqueue("cpu")
    with ServiceProcess(SERVICE):
        wait_scaler(conn, lambda insts, d: any(x["action"] == "spin up" for x in d))
    [inst] = scalestore.instances(conn)  # the service stopped; its worker runs on
    assert wait_status(task, timeout=120).status == TaskStatus.COMPLETED
    with ServiceProcess(SERVICE):  # a new service finds the instance and finishes its life
        decisions = wait_scaler(conn, lambda insts, d: not insts)
    stopped = [d for d in decisions if d["action"] == "stopped"]
    assert stopped and stopped[0]["instance"] == inst.id


def test_a_cost_cap_limits_the_instances_and_says_why(conn, cleanup):
    Queue.create("cpu")
    config = _config(cost_cap_per_hour=2.5)
    config.resources["local"].hourly_price = 1.0
    config.resources["local"].worker_command = [sys.executable, "-c", "import time; time.sleep(600)"]
    scalestore.configure(conn, config)
    for i in range(5):
        Task.create(f"c{i}", command=["true"]).enqueue("cpu")
    drivers = {"process": ProcessDriver(conn_home(), "")}
    scaler = Autoscaler(conn, drivers, name="test")
    scaler.reconcile(time.time())
    scaler.reconcile(time.time())
    assert len(scalestore.instances(conn)) == 2
    capped = [d for d in scalestore.decisions(conn) if d["action"] == "capped"]
    assert len(capped) == 1 and "cost cap (2 + 1 > 2.5/h)" in capped[0]["reason"]
    for inst in scalestore.instances(conn):
        drivers["process"].spin_down(inst.cloud_id)


@pytest.mark.docker
def test_worker_containers_on_a_real_docker_engine(conn, docker_image, redis_server, cleanup):
    """The docker driver: each worker a container (the busybox test image with this machine's
    Python and trainyard mounted read-only), started, drained and removed."""
    import os
    from pathlib import Path

    import docker

    Queue.create("cpu")
    prefix = Path(sys.prefix)
    mounts = {p: p for p in {"/usr", "/lib", "/lib64", str(prefix), str(Path(sys.base_prefix))} if Path(p).exists()}
    repo = Path(__file__).resolve().parent.parent
    mounts[str(repo)] = str(repo)
    config = ScalerConfig.model_validate(
        {
            "resources": {
                "box": {
                    "driver": "docker",
                    "image": docker_image,
                    "volumes": mounts,
                    "worker_command": [str(prefix / "bin" / "python"), "-m", "trainyard"],
                    "worker_args": ["--cpu-only"],
                    "env": FAST,
                }
            },
            "queues": {"cpu": [{"resource": "box", "max": 2}]},
            "idle_timeout_s": 1.0,
        }
    )
    scalestore.configure(conn, config)
    tasks = [Task.create(f"d{i}", command=["/bin/sh", "-c", "echo in-container"]).enqueue("cpu") for i in range(3)]
    engine = docker.from_env()
    try:
        with ServiceProcess(SERVICE, env={"TRAINYARD_REDIS_URL": redis_server.url, **os.environ}):
            for task in tasks:
                assert wait_status(task, timeout=180).status == TaskStatus.COMPLETED
            decisions = wait_scaler(conn, lambda insts, d: not insts and any(x["action"] == "stopped" for x in d))
        assert Task.get(tasks[0].id).data.runtime.worker.startswith("scale-box-")
        assert not engine.containers.list(all=True, filters={"label": "trainyard.autoscale"})
        assert _most_at_once(decisions) <= 2
    finally:
        for container in engine.containers.list(all=True, filters={"label": "trainyard.autoscale"}):
            container.remove(force=True)


def test_ec2_driver_against_a_stand_in(conn, monkeypatch):
    """EC2 cannot exist here: moto stands in for it (the same boto3 calls, answered in-process)."""
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from trainyard.controller.autoscale.ec2 import Ec2Driver

    Queue.create("gpu")
    config = ScalerConfig.model_validate(
        {
            "resources": {
                "g5": {
                    "driver": "ec2",
                    "hourly_price": 1.2,
                    "worker_args": ["--gpus", "0"],
                    "ec2": {"instance_type": "g5.xlarge", "ami_id": "ami-12345678", "tags": {"team": "ml"}},
                }
            },
            "queues": {"gpu": [{"resource": "g5", "max": 3}]},
            "cost_cap_per_hour": 3.0,
            "spin_up_timeout_s": 60,
        }
    )
    scalestore.configure(conn, config)
    for i in range(4):
        Task.create(f"g{i}", command=["true"]).enqueue("gpu")
    with moto.mock_aws():
        driver = Ec2Driver("redis://:pw@redis.internal:6379/0")
        scaler = Autoscaler(conn, {"ec2": driver}, name="test")
        now = time.time()
        scaler.reconcile(now)
        insts = scalestore.instances(conn)
        assert len(insts) == 2  # 2 x 1.2/h under the 3.0/h cap; a third would pass it
        assert sorted(driver.list()) == sorted(i.cloud_id for i in insts)
        client = driver.client("us-east-1")
        described = client.describe_instances(InstanceIds=[insts[0].cloud_id.split("/")[1]])
        tags = {t["Key"]: t["Value"] for t in described["Reservations"][0]["Instances"][0]["Tags"]}
        assert tags["trainyard-worker"] == insts[0].worker and tags["team"] == "ml"
        data = client.describe_instance_attribute(InstanceId=insts[0].cloud_id.split("/")[1], Attribute="userData")
        import base64

        script = base64.b64decode(data["UserData"]["Value"]).decode()
        assert f"--name {insts[0].worker}" in script and "--gpus 0" in script and "shutdown -h now" in script
        assert isinstance(driver.console_log(insts[0].cloud_id), str)

        # a restarted service (a new object, same Redis) gives up on workers that never registered
        again = Autoscaler(conn, {"ec2": driver}, name="test-2")
        again.reconcile(time.time() + 61)
        alive = driver.list()
        assert all(i.cloud_id not in alive for i in insts)  # terminated
        assert len(alive) == 2  # and two new ones asked for the tasks still waiting
        reasons = [d["reason"] for d in scalestore.decisions(conn) if d["action"] == "gave up"]
        assert len(reasons) == 2 and "did not register in 60s" in reasons[0]


@pytest.mark.parametrize(
    "change, complaint",
    [
        ({"queues": {"cpu": [{"resource": "local", "max": -1}]}}, "a maximum cannot be below zero (got -1)"),
        ({"queues": {"nowhere": [{"resource": "local", "max": 1}]}}, "no queue named 'nowhere'"),
        ({"queues": {"cpu": [{"resource": "huge", "max": 1}]}}, "unknown resource 'huge'"),
        ({"resources": {"local": {"driver": "docker"}}}, "a docker resource needs an image"),
    ],
)
def test_bad_configurations_get_one_clear_line_and_nothing_is_written(run_cli, conn, tmp_path, change, complaint):
    Queue.create("cpu")
    data = {"resources": {"local": {"driver": "process"}}, "queues": {"cpu": [{"resource": "local", "max": 1}]}}
    data.update(change)
    path = tmp_path / "scaler.yaml"
    path.write_text(json.dumps(data))
    proc = run_cli("autoscale", "configure", str(path))
    assert proc.returncode == 1 and complaint in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not conn.exists(keys.SCALE_CONFIG)


def test_cli_configure_and_show(run_cli, conn, tmp_path):
    Queue.create("cpu")
    path = tmp_path / "scaler.yaml"
    path.write_text(
        "resources:\n  local: {driver: process, hourly_price: 0.5}\nqueues:\n  cpu:\n    - {resource: local, max: 4}\n"
        "idle_timeout_s: 600\ncost_cap_per_hour: 10\n"
    )
    assert "queues cpu" in run_cli("autoscale", "configure", str(path), check=True).stdout
    shown = run_cli("autoscale", "show", check=True).stdout
    assert "idle timeout 600s" in shown and "cost cap 10/h" in shown and "local" in shown
    data = json.loads(run_cli("autoscale", "show", "--json", check=True).stdout)
    assert data["config"]["queues"]["cpu"][0]["max"] == 4 and data["instances"] == []


def test_both_services_run_as_controller_tasks_on_a_services_worker(run_cli, conn, cleanup):
    """`alerts service` and `autoscale service` enqueue controller tasks; a services-mode worker
    runs them (two autoscalers: one acts, one stands by); aborting them stops them."""
    from workerproc import WorkerProcess, wait_service

    Queue.create("services")
    Queue.create("cpu")
    scalestore.configure(conn, _config())
    with WorkerProcess("-q", "services", "--services-mode", "4", "--name", "svc"):
        ids = [
            run_cli(*cmd, "service", check=True).stdout.strip() for cmd in (["alerts"], ["autoscale"], ["autoscale"])
        ]
        wait_service(conn, "alerts")
        wait_service(conn, "autoscaler", count=2)
        names = {s["name"] for s in services.running(conn, "autoscaler")}
        deadline = time.monotonic() + 60
        while scalestore.leader(conn) is None and time.monotonic() < deadline:
            conn.xread({keys.EVENTS: "$"}, block=500)  # a bounded wait for the first lease
        assert scalestore.leader(conn) in names  # one acts; the other stands by
        for task_id in ids:
            Task.get(task_id).abort("test over")
        for task_id in ids:
            assert Task.get(task_id).wait(timeout=60).status == TaskStatus.ABORTED
    assert not services.running(conn)
