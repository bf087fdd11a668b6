"""``trainyard pipeline validate|run|submit|trigger|schema|files``: pipeline files (YAML or JSON)."""

from __future__ import annotations

import json
import os
import threading

import click

from ..connection import connect
from ..controller.files import json_schema, load_file, registry
from ..controller.files.compile import build
from ..controller.files.errors import PipelineFileError
from ..controller.pipeline import run_here
from ..controller.render import summary
from ..queues import logs
from ..queues.backend import streams
from ..queues.errors import InvalidInput
from .output import ago, emit_json, json_option, say, table
from .pairs import name_value_pairs

_param_option = click.option(
    "--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="A pipeline param (converted to its type)."
)
_input_option = click.option(
    "--input", "-i", "inputs", multiple=True, metavar="NAME=VALUE", help="A trigger input (converted to its type)."
)
_var_option = click.option(
    "--var", "-v", "variables", multiple=True, metavar="NAME=VALUE", help="Override one of the file's variables."
)


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@json_option
def validate_cmd(files, as_json) -> None:
    """Check pipeline files: every problem with its file, line and field (exit 1 if any)."""
    problems, ok = [], []
    for path in files:
        try:
            pf = load_file(path)
        except PipelineFileError as exc:
            problems.extend(exc.errors)
            continue
        ok.append({"file": path, "name": pf.name, "project": pf.project, "jobs": list(pf.jobs)})
    if as_json:
        emit_json({"valid": ok, "errors": [e.model_dump() for e in problems]})
    else:
        for item in ok:
            say(f"{item['file']}: ok: pipeline {item['name']!r} ({len(item['jobs'])} jobs)")
        for error in problems:
            say(f"error: {error}", err=True)
    if problems:
        raise SystemExit(1)


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@_param_option
@_input_option
@_var_option
@click.option("--quiet", "-q", is_flag=True, help="Only the summary, not each job's output.")
def run_cmd(file, params, inputs, variables, quiet) -> None:
    """Run a pipeline file here: jobs run on an in-process worker (no worker to set up), their output
    is shown as it comes, and the exit code is 1 when any job failed."""
    pf = load_file(file)
    _check_local_gpus(pf)
    conn = connect()
    pipe = build(
        pf,
        name_value_pairs(params, "--param"),
        name_value_pairs(inputs, "--input"),
        None,
        conn,
        name_value_pairs(variables, "--var"),
    )
    local_queue = f"local-steps-{os.urandom(4).hex()}"
    run = pipe._new_run(None, local_queue, False)
    say(f"pipeline {pf.name} (run {run.id}): {len(pf.jobs)} job(s)")
    done = threading.Event()
    follower = None if quiet else threading.Thread(target=_follow, args=(conn, run.id, done), daemon=True)
    if follower:
        follower.start()
    try:
        result = run_here(conn, run.id, pipe.callbacks)
    finally:
        done.set()
        if follower:
            follower.join(timeout=30)
    say(summary(result))
    if result.status != "completed":
        raise SystemExit(1)


def _check_local_gpus(pf) -> None:
    """A job asking for more GPUs than this machine has would wait forever here: refused up front."""
    wanted = {job_id: job.gpus for job_id, job in pf.jobs.items() if job.gpus}
    if not wanted:
        return
    from ..worker.gpus import default_nvml

    have = default_nvml.device_count() if default_nvml.available() else 0
    for job_id, count in wanted.items():
        if count > have:
            raise InvalidInput(
                f"{pf.filename}: jobs.{job_id}.gpus: the job needs {count} GPU(s) and this machine has {have}"
                " (run it on the workers: trainyard pipeline submit)"
            )


def _follow(conn, run_id: str, done: threading.Event) -> None:
    """Print every job's log lines as they arrive, prefixed with the job id."""
    from ..controller import run_store

    lock = threading.Lock()
    followers: dict[str, threading.Thread] = {}
    cursor = streams.last_event_id(conn)

    def tail(job: str, task_id: str) -> None:
        for line in logs.follow(conn, task_id, block_s=1.0):
            if line.stream != "sys":
                with lock:
                    say(f"[{job}] {line.text}")

    while True:
        finished = done.is_set()
        run = run_store.load(conn, run_id)
        for job, state in run.state.items():
            if state.task_id and state.task_id not in followers and state.status not in ("cached", "skipped"):
                thread = threading.Thread(target=tail, args=(job, state.task_id), daemon=True)
                followers[state.task_id] = thread
                thread.start()
        if finished:
            break
        for event in streams.follow_events(conn, cursor, 0.5):
            cursor = event.id
    for thread in followers.values():
        thread.join(timeout=30)


@click.command("submit")
@click.argument("file", type=click.Path(dir_okay=False))
@_param_option
@_var_option
@click.option("--queue", default=registry.SERVICES_QUEUE, show_default=True, help="Where its controller runs.")
@click.option("--register-only", is_flag=True, help="Register (or update) the file without starting a run.")
def submit_cmd(file, params, variables, queue, register_only) -> None:
    """Register (or update) a pipeline file by its project and name, and start a run on the workers."""
    pf = load_file(file)
    conn = connect()
    if register_only:
        registry.register(pf, conn)
        say(f"registered pipeline {pf.project}/{pf.name}")
        return
    run_id = registry.submit(
        pf, name_value_pairs(params, "--param"), conn, queue=queue, variables=name_value_pairs(variables, "--var")
    )
    say(f"registered pipeline {pf.project}/{pf.name}; run {run_id} started (controller on {queue!r})")
    say(run_id)


@click.command("trigger")
@click.argument("name")
@_input_option
@_param_option
@_var_option
@click.option("--queue", default=registry.SERVICES_QUEUE, show_default=True, help="Where its controller runs.")
def trigger_cmd(name, inputs, params, variables, queue) -> None:
    """Start a run of a registered pipeline (NAME or PROJECT/NAME) with its manual trigger's inputs."""
    run_id = registry.trigger(
        name,
        name_value_pairs(inputs, "--input"),
        connect(),
        params=name_value_pairs(params, "--param"),
        queue=queue,
        variables=name_value_pairs(variables, "--var"),
    )
    say(run_id)


@click.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of pipeline files."""
    say(json.dumps(json_schema(), indent=2))


@click.command("files")
@json_option
def files_cmd(as_json) -> None:
    """Registered pipeline files."""
    items = registry.entries(connect())
    if as_json:
        emit_json([{k: v for k, v in e.items() if k != "actions"} for e in items])
        return
    table(
        ["project", "name", "file", "updated"],
        [(e["project"], e["name"], e["filename"], ago(e["updated"])) for e in items],
    )


@click.command("unregister")
@click.argument("name")
def unregister_cmd(name) -> None:
    """Remove a registered pipeline file (NAME or PROJECT/NAME); its runs stay."""
    registry.unregister(name, conn=connect())
    say(f"unregistered {name}")


COMMANDS = [validate_cmd, run_cmd, submit_cmd, trigger_cmd, schema_cmd, files_cmd, unregister_cmd]
