"""``trainyard worker``: run a worker, and look at or steer the fleet."""

from __future__ import annotations

import logging
import sys
import time

import click

from ..connection import connect, redis_url
from ..queues import workers as registry
from ..settings import settings
from ..worker.agent import Worker, WorkerConfig
from ..worker.gpus import default_nvml, describe, resolve_worker_gpus
from .output import ago, emit_json, json_option, table


@click.group(invoke_without_command=True)
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    metavar="NAME",
    help="A queue to take work from (repeat; the order is the priority).",
)
@click.option("--gpus", help="GPUs this worker gives its tasks: 0,1 or 0-3 (default: all NVML reports).")
@click.option("--cpu-only", is_flag=True, help="Give tasks no GPU.")
@click.option("--order-fairness", is_flag=True, help="Take the queues round robin instead of in strict order.")
@click.option("--name", help="A unique worker name (default: host-pid-random).")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option(
    "--services-mode",
    "services",
    type=click.IntRange(min=1),
    is_flag=False,
    flag_value=8,
    default=None,
    metavar="[N]",
    help="Run up to N tasks at once (default 8), CPU only, local mode: for controllers.",
)
@click.option(
    "--mode",
    type=click.Choice(["local", "venv", "conda", "docker"]),
    default="local",
    show_default=True,
    help="Default way tasks run (a task may name its own): local uses this worker's Python; venv and "
    "conda build cached environments from the task's requirements; docker runs a container.",
)
@click.option(
    "--docker", "docker_image", metavar="IMAGE", help="Docker mode by default, with IMAGE for tasks that name none."
)
@click.option(
    "--docker-network", help="Network for task containers (default: bridge, or host when the engine has no bridge)."
)
@click.option(
    "--env-cache-size",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Cached venv/conda environments kept on this host (least recently used go first).",
)
@click.option(
    "--installer",
    type=click.Choice(["auto", "uv", "pip"]),
    default="auto",
    show_default=True,
    help="Installs requirements with uv when available (auto), or always with one of them.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL when a task is aborted or timed out.",
)
@click.option("--create-queue", is_flag=True, help="Create queues that do not exist yet.")
@click.option("--keep-runs", is_flag=True, help="Keep each task's run folder (for debugging).")
@click.pass_context
def worker(
    ctx,
    queues,
    gpus,
    cpu_only,
    order_fairness,
    name,
    burst,
    services,
    mode,
    docker_image,
    docker_network,
    env_cache_size,
    installer,
    grace,
    create_queue,
    keep_runs,
) -> None:
    """Run a worker: `trainyard worker --queue single-gpu --gpus 0`.

    SIGTERM or Ctrl-C drains (the current task finishes, no new one is taken); a second one
    stops at once and puts the current task back at the front of its queue (so does SIGQUIT).
    """
    if ctx.invoked_subcommand is not None:
        return
    if not queues:
        raise click.UsageError("give at least one --queue")
    nvml = default_nvml
    if services is not None:
        if gpus is not None or mode != "local" or docker_image:
            raise click.UsageError("--services-mode runs tasks locally without GPUs: drop --gpus/--mode/--docker")
        cpu_only = True
    if gpus is None and not cpu_only:
        chosen = list(range(nvml.device_count())) if nvml.available() else []
    else:
        chosen = resolve_worker_gpus(gpus, cpu_only, nvml)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    current = settings()
    config = WorkerConfig(
        queues=list(dict.fromkeys(queues)),
        gpus=chosen,
        name=name,
        order_fairness=order_fairness,
        burst=burst,
        mode=mode,
        grace_s=grace,
        create_queues=create_queue,
        keep_runs=keep_runs,
        home=current.home,
        artifacts_url=current.artifacts_url,
        redis_url=redis_url(),
        docker_image=docker_image,
        docker_network=docker_network,
        env_cache_size=env_cache_size,
        installer=installer,
        slots=services or 1,
    )
    if docker_image:
        config.mode = "docker"
    agent = Worker(connect(), config)
    click.echo(
        f"worker {agent.name}: queues {', '.join(config.queues)}; {describe(nvml)}"
        f"{'' if chosen else '; tasks get no GPU'}",
        err=True,
    )
    agent.install_signal_handlers()
    raise SystemExit(agent.run())


@worker.command("list")
@json_option
def list_cmd(as_json) -> None:
    """Live workers: host, queues, GPUs, state, current task, last heartbeat."""
    infos = registry.list_workers(connect())
    if as_json:
        emit_json([i.model_dump(mode="json") for i in infos])
        return
    table(
        ["worker", "host", "queues", "gpus", "state", "current", "heartbeat"],
        [
            (
                i.name,
                i.host,
                ",".join(i.queues),
                ",".join(map(str, i.gpus)) or "-",
                i.state,
                ",".join(i.current) or "-",
                ago(i.heartbeat),
            )
            for i in infos
        ],
    )


@worker.command("show")
@click.argument("name")
@json_option
def show_cmd(name, as_json) -> None:
    """One worker in detail."""
    info = registry.get(connect(), name)
    if info is None:
        raise click.ClickException(f"no live worker named {name!r}")
    if as_json:
        emit_json(info.model_dump(mode="json"))
        return
    rows = [
        ("name", info.name),
        ("host", info.host),
        ("pid", info.pid),
        ("queues", ", ".join(info.queues)),
        ("order", info.order),
        ("gpus", ",".join(map(str, info.gpus)) or "none"),
        ("mode", info.mode),
        ("state", info.state),
        ("current", ", ".join(info.current) or "-"),
        ("up", f"{time.time() - info.started:.0f}s"),
        ("heartbeat", ago(info.heartbeat)),
    ]
    rows += [(k, v) for k, v in sorted(info.stats.items())]
    table(["field", "value"], rows)


@worker.command("drain")
@click.argument("name")
def drain_cmd(name) -> None:
    """Ask a worker to finish its current work, take no more, and exit."""
    registry.send_command(connect(), name, "drain")
    click.echo(f"{name}: drain requested")


@worker.command("stop")
@click.argument("name")
def stop_cmd(name) -> None:
    """Ask a worker to stop now; its current tasks go back to the front of their queues."""
    registry.send_command(connect(), name, "stop")
    click.echo(f"{name}: stop requested")
