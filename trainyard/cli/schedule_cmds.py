"""``trainyard schedule ...``: run tasks or registered pipelines on cron schedules; the trigger service."""

from __future__ import annotations

import time

import click

from ..connection import connect
from ..controller import schedules, triggers
from ..controller.files.cron import next_tick, utc_text
from .output import emit_json, json_option, say, table
from .pairs import name_value_pairs


@click.group()
def schedule() -> None:
    """Cron schedules (like ClearML's TaskScheduler) and the trigger service that fires them."""


@schedule.command("add")
@click.option("--cron", required=True, help="'MIN HOUR DAY MONTH WEEKDAY', or 6 fields with seconds last.")
@click.option("--task", "task_id", help="A task to clone and enqueue at every tick.")
@click.option("--queue", help="Where each clone goes (tasks); where the controller runs (pipelines).")
@click.option("--pipeline", help="A registered pipeline (NAME or PROJECT/NAME) to run at every tick.")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="IANA time zone of the cron fields.")
@click.option("--name", help="A label for the schedule.")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="Pipeline params.")
@json_option
def add_cmd(cron, task_id, queue, pipeline, tz, name, params, as_json) -> None:
    """Add a schedule; a running trigger service fires it (``trainyard schedule service``)."""
    item = schedules.add(
        cron,
        task_id=task_id,
        queue=queue,
        pipeline=pipeline,
        timezone=tz,
        name=name,
        params=name_value_pairs(params, "--param"),
        conn=connect(),
    )
    if as_json:
        emit_json(item.model_dump())
        return
    say(f"schedule {item.id}: next tick {utc_text(next_tick(item.cron, item.timezone, time.time()))}")


@schedule.command("list")
@json_option
def list_cmd(as_json) -> None:
    """User schedules and the schedules of registered pipeline files, with their next and last firing."""
    conn = connect()
    items = schedules.all_schedules(conn)
    now = time.time()
    rows = []
    for item in items:
        last = schedules.last_fired(conn, item.id)
        rows.append((item, next_tick(item.cron, item.timezone, now), last))
    if as_json:
        emit_json([{**i.model_dump(), "next": n, "last": last} for i, n, last in rows])
        return
    table(
        ["id", "runs", "cron", "tz", "next", "last fired"],
        [
            (
                i.id,
                f"task {i.task_id} → {i.queue}" if i.kind == "task" else f"pipeline {i.pipeline}",
                i.cron,
                i.timezone,
                utc_text(n),
                (last.get("started") or f"error: {last.get('error')}") if last else "",
            )
            for i, n, last in rows
        ],
    )


@schedule.command("remove")
@click.argument("schedule_id")
def remove_cmd(schedule_id) -> None:
    """Remove a user schedule (a pipeline file's schedules go with its file)."""
    schedules.remove(schedule_id, connect())
    say(f"removed schedule {schedule_id}")


@schedule.command("service")
@click.option("--queue", default="services", show_default=True, help="The services queue it runs on.")
@click.option("--here", is_flag=True, help="Run it in this terminal instead (Ctrl-C stops it).")
def service_cmd(queue, here) -> None:
    """Start a trigger service (schedules and task-event triggers). Several can run: none fires twice."""
    if here:
        raise SystemExit(triggers.main())
    say(triggers.start_service(connect(), queue))
