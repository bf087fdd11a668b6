"""``trainyard pipeline ...``: list, show, retry and abort pipeline runs."""

from __future__ import annotations

import click

from ..connection import connect
from ..controller import run_store
from ..controller.pipeline import resume, retry_run, stop_run
from ..controller.render import dag_text, duration, summary
from .output import ago, console, emit_json, json_option, printable, say, styled_status, table


@click.group()
def pipeline() -> None:
    """Pipeline runs: list, show (the DAG drawn as text), retry, abort; pipeline files: validate, run,
    submit, trigger, schema, files, unregister."""


@pipeline.command("list")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
def list_cmd(limit, offset, as_json) -> None:
    """Pipeline runs, newest first."""
    items = run_store.list_runs(connect(), limit, offset)
    if as_json:
        emit_json([r.model_dump(mode="json") for r in items])
        return
    table(
        ["run", "pipeline", "project", "status", "steps", "created", "duration"],
        [
            (
                r.id,
                f"{r.name} v{r.version}",
                r.project,
                styled_status(r.status),
                f"{sum(s.status in ('completed', 'cached') for s in r.state.values())}/{len(r.steps)}",
                ago(r.created),
                duration(r.started, r.ended),
            )
            for r in items
        ],
    )


@pipeline.command("show")
@click.argument("run_id")
@json_option
def show_cmd(run_id, as_json) -> None:
    """One run: the DAG as text and each step's state, task id and duration."""
    run = run_store.load(connect(), run_id)
    if as_json:
        emit_json(run.model_dump(mode="json"))
        return
    console().print(printable(summary(run).splitlines()[0]), markup=False, highlight=False)
    say(dag_text(run))
    table(
        ["step", "status", "task", "attempt", "duration", "note"],
        [
            (
                name,
                styled_status(s.status),
                s.task_id,
                s.attempt or "",
                duration(s.started, s.ended),
                s.error or s.message or "",
            )
            for name, s in run.state.items()
        ],
    )


@pipeline.command("retry")
@click.argument("run_id")
@click.option("--step", "steps", multiple=True, help="Re-run these steps (and their descendants) instead.")
def retry_cmd(run_id, steps) -> None:
    """Re-run the failed (or aborted, skipped) steps and everything downstream; finished ones stay.

    A run whose controller ran on a services queue is re-queued there; a local run continues here.
    """
    conn = connect()
    run = retry_run(conn, run_id, steps or None)
    pending = [n for n, s in run.state.items() if s.status == "pending"]
    say(f"run {run_id}: re-running {', '.join(pending) or 'nothing'}")
    result = resume(conn, run_id)
    if result is None:
        say(f"controller re-queued on {run.controller_queue}")
        return
    say(summary(result))
    if result.status != "completed":
        raise SystemExit(1)


@pipeline.command("abort")
@click.argument("run_id")
def abort_cmd(run_id) -> None:
    """Stop a run: running steps are aborted, pending ones skipped."""
    run = stop_run(connect(), run_id)
    if run.status in ("pending", "running"):
        say(f"run {run_id}: stop requested")
    else:
        say(f"run {run_id}: {run.status}" + (f" ({run.message})" if run.message else ""))
