"""``trainyard worker``: run a worker, and look at or steer the fleet."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import click

from ..connection import connect, connect_waiting, redis_url, use_client
from ..queues import services
from ..queues import workers as registry
from ..settings import settings
from ..worker import modes as execution_modes
from ..worker.agent import CONNECTIONS, Worker, WorkerConfig, default_name
from ..worker.gpus import default_nvml, describe, resolve_worker_gpus
from .output import ago, emit_json, json_option, say, table


@click.group(invoke_without_command=True)
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    metavar="NAME[=GPUS]",
    help="A queue to take work from (repeat; the order is the priority); NAME=2 gives its tasks 2 GPUs each.",
)
@click.option("--gpus", help="GPUs this worker gives its tasks: 0,1 or 0-3 (default: all NVML reports).")
@click.option("--cpu-only", is_flag=True, help="Give tasks no GPU.")
@click.option(
    "--gpu-share",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Tasks one GPU may hold at once (when their declared memory fits).",
)
@click.option(
    "--backfill-window",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a queue head that does not fit lets lower queues use the free GPUs; then it waits.",
)
@click.option(
    "--foreign-mem-mb",
    type=int,
    default=512,
    show_default=True,
    help="A GPU where non-trainyard processes use more memory than this is left alone (-1: ignore).",
)
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
    type=click.Choice(execution_modes.names()),
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
@click.option(
    "--wait-redis",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait at start for a Redis not up yet (refused, closed, timed out, loading); 0: fail at once.",
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
    gpu_share,
    backfill_window,
    foreign_mem_mb,
    mode,
    docker_image,
    docker_network,
    env_cache_size,
    installer,
    grace,
    wait_redis,
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
    queues, queue_gpus = _parse_queues(queues)
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
    name = name or default_name()
    use_client(f"trainyard-worker:{name}", max_connections=CONNECTIONS)  # CLIENT LIST shows them, at most 2
    conn = connect_waiting(wait_redis, lambda line: say(f"worker: {line}", err=True))
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
        queue_gpus=queue_gpus,
        gpu_share=gpu_share,
        backfill_s=backfill_window,
        foreign_mem_mb=foreign_mem_mb,
    )
    if docker_image:
        config.mode = "docker"
    agent = Worker(conn, config)
    say(
        f"worker {agent.name}: queues {', '.join(config.queues)}; {describe(nvml)}"
        f"{'' if chosen else '; tasks get no GPU'}",
        err=True,
    )
    agent.install_signal_handlers()
    raise SystemExit(agent.run())


def _parse_queues(specs) -> tuple[list[str], dict[str, int]]:
    """``--queue dual=2``: tasks from ``dual`` get 2 GPUs each."""
    names, gpus = [], {}
    for spec in specs:
        name, sep, count = spec.partition("=")
        if sep:
            if not count.isdigit() or int(count) < 1:
                raise click.UsageError(f"bad --queue {spec!r}: expected NAME or NAME=GPUS (a positive count)")
            gpus[name] = int(count)
        names.append(name)
    return list(dict.fromkeys(names)), gpus


@worker.command("list")
@json_option
def list_cmd(as_json) -> None:
    """Live workers: host, queues, GPUs, state, current task, last heartbeat; then the running
    services (alerts, autoscaler)."""
    conn = connect()
    infos = registry.list_workers(conn)
    if as_json:
        emit_json([i.model_dump(mode="json") for i in infos])
        return
    table(
        ["worker", "host", "queues", "gpus", "state", "current", "cpu", "mem", "gpu util/mem", "heartbeat"],
        [
            (
                i.name,
                i.host,
                ",".join(i.queues),
                ",".join(map(str, i.gpus)) or "-",
                i.state,
                ",".join(i.current) or "-",
                _pct(i.stats.get("cpu_percent")),
                _pct((i.stats.get("memory") or {}).get("percent")),
                _gpu_cell(i.stats),
                ago(i.heartbeat),
            )
            for i in infos
        ],
    )
    running = services.running(conn)
    if running:
        table(
            ["service", "name", "host", "pid", "state", "heartbeat"],
            [(s["kind"], s["name"], s.get("host"), s.get("pid"), _service_state(s), ago(s.get("at"))) for s in running],
        )


def _service_state(entry: dict[str, Any]) -> str:
    if entry["kind"] == "autoscaler":
        return "acting" if entry.get("leading") else "standing by"
    return f"{entry.get('sent', 0)} sent"


def _pct(value: Any) -> str:
    return f"{value:.0f}%" if isinstance(value, (int, float)) else "-"


def _mb(value: Any) -> str:
    return f"{value}MB" if value is not None else "?"


def _gpu_cell(stats: dict[str, Any]) -> str:
    """Per GPU "index:util%/memMB", "no NVML", or "-" (no GPU, or no stats yet)."""
    if not stats:
        return "-"
    if "error" in stats:
        return "stats failed"
    gpus = stats.get("gpus")
    if gpus is None:
        return "no NVML" if "gpu_note" in stats else "-"
    cells = [f"{g.get('index')}:{_pct(g.get('utilization_pct'))}/{_mb(g.get('memory_used_mb'))}" for g in gpus]
    return " ".join(cells) or "-"


def _stats_rows(stats: dict[str, Any]) -> list[tuple[str, Any]]:
    """The heartbeat's snapshot as readable rows; keys this version does not know are shown as they are."""
    if not stats:
        return [("stats", "none yet (they come with the next heartbeat)")]
    rows: list[tuple[str, Any]] = [("sampled", ago(stats.get("time")))]
    cpu = f"{_pct(stats.get('cpu_percent'))} of {stats.get('cpu_count', '?')} CPUs"
    if stats.get("load_avg"):
        cpu += ", load " + " ".join(f"{x:.2f}" for x in stats["load_avg"])
    rows.append(("cpu", cpu))
    for key, label in (("memory", "memory"), ("disk", "disk (home)")):
        part = stats.get(key)
        if part:
            rows.append((label, f"{part.get('used_mb')} / {part.get('total_mb')} MB ({_pct(part.get('percent'))})"))
    net = stats.get("net")
    if net:
        rows.append(
            ("network", f"sent {_rate(net.get('sent_bytes_per_s'))}, received {_rate(net.get('recv_bytes_per_s'))}")
        )
    gpus = stats.get("gpus")
    if gpus is None and "gpu_note" in stats:
        rows.append(("gpus", f"no NVML: {stats['gpu_note']}"))
    for g in gpus or ():
        rows.append(
            (
                f"gpu {g.get('index')}",
                f"{g.get('name')}: {_pct(g.get('utilization_pct'))} util, "
                f"{g.get('memory_used_mb')} / {g.get('memory_total_mb')} MB, "
                f"{g.get('temperature_c') if g.get('temperature_c') is not None else '?'} C, "
                f"{g.get('processes', 0)} process(es)",
            )
        )
    if gpus is not None and stats.get("gpu_note"):
        rows.append(("gpu note", stats["gpu_note"]))
    if stats.get("sample_ms") is not None:
        rows.append(("sample cost", f"{stats['sample_ms']} ms"))
    known = {"time", "cpu_percent", "cpu_count", "load_avg", "memory", "disk", "net", "gpus", "gpu_note", "sample_ms"}
    rows += [(k, v) for k, v in sorted(stats.items()) if k not in known]
    return rows


def _rate(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "?"
    if value < 1e3:
        return f"{value:.0f} B/s"
    return f"{value / 1e3:.1f} kB/s" if value < 1e6 else f"{value / 1e6:.1f} MB/s"


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
    rows += _stats_rows(info.stats)
    table(["field", "value"], rows)


@worker.command("drain")
@click.argument("name")
def drain_cmd(name) -> None:
    """Ask a worker to finish its current work, take no more, and exit."""
    registry.send_command(connect(), name, "drain")
    say(f"{name}: drain requested")


@worker.command("stop")
@click.argument("name")
def stop_cmd(name) -> None:
    """Ask a worker to stop now; its current tasks go back to the front of their queues."""
    registry.send_command(connect(), name, "stop")
    say(f"{name}: stop requested")
