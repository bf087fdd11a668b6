"""``trainyard autoscale ...``: the autoscaler's configuration, its state and decisions, the service."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from ..connection import connect
from ..controller.autoscale import service as scale_service
from ..queues import scalestore
from ..queues.errors import InvalidInput
from .output import ago, emit_json, json_option, say, table


@click.group()
def autoscale() -> None:
    """Start workers (processes, containers, EC2 instances) when tasks wait, stop them when idle."""


@autoscale.command("configure")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def configure_cmd(path: Path, as_json) -> None:
    """Set the configuration from a YAML or JSON file (resources, queues, timeouts, cost cap)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InvalidInput(f"{path}{where}: not valid YAML") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: expected a mapping with resources and queues")
    config = scalestore.configure(connect(), scalestore.ScalerConfig.model_validate(data))
    if as_json:
        emit_json(config.model_dump())
        return
    say(f"autoscaler configured: {len(config.resources)} resource(s), queues {', '.join(config.queues)}")


@autoscale.command("show")
@click.option("--limit", type=int, default=20, show_default=True, help="How many decisions.")
@json_option
def show_cmd(limit, as_json) -> None:
    """The configuration per queue, the instances it runs, and its latest decisions with reasons."""
    conn = connect()
    config = scalestore.load_config(conn)
    instances = scalestore.instances(conn)
    decisions = scalestore.decisions(conn, max(1, min(limit, 10_000)))
    if as_json:
        emit_json(
            {
                "config": config.model_dump() if config else None,
                "leader": scalestore.leader(conn),
                "instances": [i.model_dump() for i in instances],
                "decisions": decisions,
            }
        )
        return
    if config is None:
        say("the autoscaler is not configured (trainyard autoscale configure FILE)")
        return
    cap = f", cost cap {config.cost_cap_per_hour:g}/h" if config.cost_cap_per_hour is not None else ""
    say(
        f"idle timeout {config.idle_timeout_s:g}s, spin-up timeout {config.spin_up_timeout_s:g}s{cap}; "
        f"acting: {scalestore.leader(conn) or 'no autoscaler runs'}"
    )
    table(
        ["queue", "resource", "driver", "max", "running", "price/h"],
        [
            (
                queue,
                e.resource,
                config.resources[e.resource].driver,
                e.max,
                sum(1 for i in instances if i.resource == e.resource),
                f"{config.resources[e.resource].hourly_price:g}",
            )
            for queue, entries in config.queues.items()
            for e in entries
        ],
    )
    table(
        ["instance", "worker", "queue", "state", "started", "machine"],
        [(i.id, i.worker, i.queue, i.state, ago(i.started), i.cloud_id) for i in instances],
        title="instances",
    )
    table(
        ["when", "queue", "decision", "reason"],
        [(ago(d["at"]), d["queue"], d["action"], d["reason"]) for d in decisions],
        title="decisions",
    )


@autoscale.command("service")
@click.option("--queue", default="services", show_default=True, help="The services queue it runs on.")
@click.option("--here", is_flag=True, help="Run it in this terminal instead (Ctrl-C stops it).")
def service_cmd(queue, here) -> None:
    """Start an autoscaler. Several can run: one acts, the others stand by."""
    if here:
        raise SystemExit(scale_service.main())
    say(scale_service.start_service(connect(), queue))
