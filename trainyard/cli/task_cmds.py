"""``trainyard task ...``: create, clone, edit, enqueue and follow tasks."""

from __future__ import annotations

import json

import click

from ..queues.errors import InvalidInput
from ..queues.params import normalize_key, parse_assignments, secret_ref
from ..queues.record import FINAL_STATUSES, TaskStatus, TaskType
from ..queues.task import Task
from .execution import execution_flags, given_options
from .output import ago, console, duration, emit_json, json_option, say, styled_status, table

_param_option = click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="SECTION/NAME=VALUE",
    help="A parameter; VALUE is read as JSON when it parses (3, 0.1, true, null, [1,2]), else as text.",
)


@click.group()
def task() -> None:
    """Create, edit, enqueue and follow tasks."""


def _print_task(t: Task, as_json: bool) -> None:
    if as_json:
        emit_json(t.to_dict())
        return
    r = t.data
    rows = [
        ("id", r.id),
        ("name", r.name),
        ("project", r.project),
        ("type", r.type.value),
        ("status", styled_status(r.status.value)),
        ("message", r.status_message),
        ("parent", r.parent),
        ("tags", ", ".join(r.tags)),
        ("user", r.user),
        ("created", ago(r.created)),
        ("queue", r.execution.queue),
        ("priority", r.execution.priority if r.execution.queue else None),
        ("duration", duration(r.started, r.ended) if r.started else None),
        ("repository", r.script.repository),
        ("branch", r.script.branch),
        ("commit", r.script.commit),
        ("working dir", r.script.working_dir if r.script.entry_point else None),
        ("entry point", r.script.entry_point),
        ("command", " ".join(r.script.command) if r.script.command else None),
        ("diff", f"{len(r.script.diff.splitlines())} lines" if r.script.diff else None),
        ("requirements", ", ".join(r.script.requirements)),
        ("image", r.container.image),
        ("mode", r.execution.mode.value if r.execution.mode else None),
        ("gpus", r.execution.gpus.count or None),
        ("time limit", r.execution.time_limit),
        ("retries", r.execution.retries or None),
        ("worker", r.runtime.worker),
        ("exit code", r.runtime.exit_code),
        ("error", r.runtime.error),
    ]
    table(["field", "value"], [row for row in rows if row[1] not in (None, "")])
    if r.parameters:
        table(
            ["parameter", "value", "type"],
            [(k, json.dumps(v), type(v).__name__) for k, v in sorted(r.parameters.items())],
        )
    if r.outputs:
        table(["output", "value"], [(k, json.dumps(v)) for k, v in r.outputs.items()])
    if r.artifacts:
        table(
            ["artifact", "uri", "size", "sha256"],
            [(a.name, a.uri, a.size, (a.sha256 or "")[:12]) for a in r.artifacts.values()],
        )
    if r.metrics:
        table(
            ["metric", "series", "last", "min", "max", "step"],
            [
                (title, series, m.last, m.min, m.max, m.step)
                for title, by_series in r.metrics.items()
                for series, m in by_series.items()
            ],
        )
    if r.runtime.log_tail and r.status == TaskStatus.FAILED:
        console().print("[bold]last log lines[/]")
        for line in r.runtime.log_tail:
            say(f"  {line}")


def _list_rows(tasks: list[Task]):
    for t in tasks:
        r = t.data
        yield (
            r.id,
            r.name,
            r.project,
            styled_status(r.status.value),
            r.execution.queue,
            ago(r.created),
            duration(r.started, r.ended) if r.started else "",
        )


@task.command("create", context_settings={"ignore_unknown_options": True})
@click.option("--name", "-n", required=True, help="Task name.")
@click.option("--project", default="default", show_default=True)
@click.option("--script", type=click.Path(dir_okay=False), help="A Python script (its git checkout is recorded).")
@click.option(
    "--type", "task_type", type=click.Choice([t.value for t in TaskType]), default="training", show_default=True
)
@_param_option
@click.option("--requirements-file", type=click.Path(exists=True, dir_okay=False))
@execution_flags
@click.option(
    "--secret-param",
    multiple=True,
    metavar="SECTION/NAME=SECRET",
    help='A parameter whose value is the worker-held secret SECRET (stored as {"$secret": SECRET}).',
)
@click.option("--tag", "tags", multiple=True)
@click.option("--comment")
@click.option("--queue", "-q", help="Enqueue right away on this queue.")
@click.option("--priority", type=int, default=0)
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def create_cmd(
    name,
    project,
    script,
    task_type,
    params,
    requirements_file,
    secret_param,
    tags,
    comment,
    queue,
    priority,
    as_json,
    command,
    **flags,
) -> None:
    """Create a draft task from --script or from a COMMAND given after `--`.

    \b
    trainyard task create --name train --script train.py -p Args/lr=0.01
    trainyard task create --name hello -- python -c "print('hi')"
    """
    parameters = parse_assignments(params)
    for item in secret_param:
        key, _, secret = item.partition("=")
        parameters[normalize_key(key.strip())] = secret_ref(secret.strip())
    options = given_options(flags)
    if options.get("requirements") and requirements_file:
        raise InvalidInput("give --requirement or --requirements-file, not both")
    if requirements_file:
        options["requirements"] = requirements_file
    t = Task.create(
        name,
        project,
        script=script,
        command=list(command) or None,
        task_type=task_type,
        parameters=parameters,
        tags=tags,
        comment=comment,
        **options,
    )
    if queue:
        try:
            t.enqueue(queue, priority=priority)
        except Exception:
            t.delete()  # nothing half-done: the draft goes when the enqueue is refused
            raise
    if as_json:
        emit_json(t.to_dict())
    else:
        say(t.id)


@task.command("clone")
@click.argument("task_id")
@click.option("--name", "-n")
@click.option("--project")
@_param_option
@click.option("--queue", "-q", help="Enqueue the clone right away.")
@click.option("--priority", type=int, default=0)
@json_option
def clone_cmd(task_id, name, project, params, queue, priority, as_json) -> None:
    """Clone TASK_ID into a new draft (parameters copied, overrides applied)."""
    overrides = parse_assignments(params)
    clone = Task.get(task_id).clone(name=name, project=project, parameters=overrides)
    if queue:
        try:
            clone.enqueue(queue, priority=priority)
        except Exception:
            clone.delete()
            raise
    if as_json:
        emit_json(clone.to_dict())
    else:
        say(clone.id)


@task.command("set")
@click.argument("task_id")
@click.argument("assignments", nargs=-1, metavar="[SECTION/NAME=VALUE]...")
@click.option("--replace", is_flag=True, help="Replace all parameters instead of merging.")
@click.option("--unset", multiple=True, metavar="SECTION/NAME", help="Remove a parameter.")
@click.option("--name", "-n")
@click.option("--comment")
@click.option("--tag", "tags", multiple=True, help="Add a tag.")
@click.option("--requirement", "requirements", multiple=True, help="Replace the requirements (repeatable).")
@click.option("--docker-image")
@click.option("--gpus", type=click.IntRange(min=0))
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True))
@click.option("--retries", type=click.IntRange(min=0))
@json_option
def set_cmd(
    task_id,
    assignments,
    replace,
    unset,
    name,
    comment,
    tags,
    requirements,
    docker_image,
    gpus,
    time_limit,
    retries,
    as_json,
) -> None:
    """Edit a draft: parameters (typed) and definition fields. Tags may be added in any state."""
    t = Task.get(task_id)
    params = parse_assignments(assignments)  # all parsed before anything is written
    changes = {
        k: v
        for k, v in {
            "name": name,
            "comment": comment,
            "docker_image": docker_image,
            "gpus": gpus,
            "time_limit": time_limit,
            "retries": retries,
        }.items()
        if v is not None
    }
    if requirements:
        changes["requirements"] = list(requirements)
    if params or replace or unset or changes:

        def edit_all(record):
            new = dict(params) if replace else {**record.parameters, **params}
            for key in unset:
                new.pop(normalize_key(key), None)
            record.parameters = new

        t._edit(edit_all, "set parameters of")
        if changes:
            t.edit(**changes)
    if tags:
        t.add_tags(*tags)
    _print_task(t, as_json) if as_json else say(t.id)


@task.command("enqueue")
@click.argument("task_id")
@click.option("--queue", "-q", required=True)
@click.option("--priority", type=int, default=0, help="Higher runs first; equal priorities run in order.")
@click.option("--front", is_flag=True, help="Go ahead of every waiting task.")
@click.option("--create-queue", is_flag=True, help="Create the queue when it does not exist.")
@json_option
def enqueue_cmd(task_id, queue, priority, front, create_queue, as_json) -> None:
    """Put a draft task on a queue."""
    t = Task.get(task_id).enqueue(queue, priority=priority, front=front, create_queue=create_queue)
    if as_json:
        emit_json(t.to_dict())
    else:
        say(f"{t.id} queued on {queue}")


@task.command("dequeue")
@click.argument("task_id")
def dequeue_cmd(task_id) -> None:
    """Take a queued task off its queue (back to draft)."""
    t = Task.get(task_id).dequeue()
    say(f"{t.id} back to draft")


@task.command("abort")
@click.argument("task_id")
@click.option("--message", default="aborted by user")
def abort_cmd(task_id, message) -> None:
    """Abort a queued or running task."""
    t = Task.get(task_id).abort(message)
    if t.status == TaskStatus.RUNNING:
        say(f"{t.id} abort requested (its worker stops it)")
    else:
        say(f"{t.id} aborted")


@task.command("reset")
@click.argument("task_id")
def reset_cmd(task_id) -> None:
    """Put a finished task back to draft (results and log cleared)."""
    t = Task.get(task_id).reset()
    say(f"{t.id} reset to draft")


@task.command("delete")
@click.argument("task_id")
def delete_cmd(task_id) -> None:
    """Delete a task that is not queued or running."""
    Task.get(task_id).delete()
    say(f"{task_id} deleted")


@task.command("show")
@click.argument("task_id")
@json_option
def show_cmd(task_id, as_json) -> None:
    """Show one task."""
    _print_task(Task.get(task_id), as_json)


@task.command("list")
@click.option("--project")
@click.option("--status", "statuses", multiple=True, type=click.Choice([s.value for s in TaskStatus]))
@click.option("--tag")
@click.option("--queue", "-q")
@click.option("--name", help="Glob (sweep-*) or substring.")
@click.option("--parent")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
def list_cmd(project, statuses, tag, queue, name, parent, limit, offset, as_json) -> None:
    """List tasks, newest first."""
    tasks = Task.list(
        project=project,
        status=list(statuses) or None,
        tag=tag,
        queue=queue,
        name=name,
        parent=parent,
        limit=limit,
        offset=offset,
    )
    if as_json:
        emit_json([t.to_dict() for t in tasks])
        return
    table(["id", "name", "project", "status", "queue", "created", "duration"], _list_rows(tasks))
    if len(tasks) == limit:
        say(f"(first {limit} from {offset}; --offset {offset + limit} for more)", err=True)


@task.command("wait")
@click.argument("task_id")
@click.option("--timeout", type=click.FloatRange(min=0), help="Seconds; exit 4 when they pass.")
@json_option
def wait_cmd(task_id, timeout, as_json) -> None:
    """Wait until the task is completed, failed or aborted.

    Exit 0 when completed, 1 when failed or aborted, 4 on timeout.
    """
    t = Task.get(task_id).wait(timeout=timeout, statuses=FINAL_STATUSES)
    if as_json:
        emit_json(t.to_dict())
    else:
        say(f"{t.id} {t.status.value}")
    if t.status != TaskStatus.COMPLETED:
        raise SystemExit(1)


@task.command("logs")
@click.argument("task_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the task ends.")
@click.option("--tail", "tail_n", type=click.IntRange(min=1), help="Only the last N lines.")
def logs_cmd(task_id, follow, tail_n) -> None:
    """Print a task's log (stdout, stderr and the worker's [trainyard] lines)."""
    from ..queues import logs

    t = Task.get(task_id)
    conn = t.connection
    if follow:
        for line in logs.follow(conn, task_id):
            say(line.text, err=line.stream == "err")
        return
    lines = logs.tail(conn, task_id, tail_n) if tail_n else logs.read(conn, task_id)
    for line in lines:
        say(line.text, err=line.stream == "err")
