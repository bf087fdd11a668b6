"""``trainyard queue ...``: named queues."""

from __future__ import annotations

import click

from ..queues.errors import InvalidInput
from ..queues.queue import Queue
from ..queues.store import TaskStore
from .output import ago, emit_json, json_option, say, table


@click.group()
def queue() -> None:
    """Create, inspect and reorder queues."""


@queue.command("create")
@click.argument("name")
@click.option("--description", default="")
@click.option("--exist-ok", is_flag=True, help="No error when it exists already.")
@click.option(
    "--max-running", type=click.IntRange(min=0), default=0, help="At most N of its tasks run at once (0: no limit)."
)
def create_cmd(name, description, exist_ok, max_running) -> None:
    """Create a queue."""
    Queue.create(name, description, exist_ok=exist_ok, max_running=max_running)
    say(f"queue {name} created")


@queue.command("limit")
@click.argument("name")
@click.argument("max_running", type=click.IntRange(min=0))
def limit_cmd(name, max_running) -> None:
    """Let at most MAX_RUNNING of a queue's tasks run at once, over all workers (0: no limit)."""
    Queue(name).set_limit(max_running)
    say(f"queue {name}: at most {max_running or 'unlimited'} running")


@queue.command("list")
@json_option
def list_cmd(as_json) -> None:
    """Queues with their statistics: waiting, running (and limit), how long the head has waited."""
    infos = Queue.list()
    if as_json:
        emit_json(
            [
                {
                    "name": q.name,
                    "length": q.length,
                    "running": q.running,
                    "max_running": q.max_running,
                    "oldest_wait_s": q.oldest_wait_s,
                    "created": q.created,
                    "description": q.description,
                }
                for q in infos
            ]
        )
        return
    table(
        ["queue", "waiting", "running", "limit", "head waited", "created", "description"],
        [
            (
                q.name,
                q.length,
                q.running,
                q.max_running or "-",
                _seconds(q.oldest_wait_s),
                ago(q.created),
                q.description,
            )
            for q in infos
        ],
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}s" if value < 120 else f"{value / 60:.0f}m"


@queue.command("show")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
def show_cmd(name, limit, offset, as_json) -> None:
    """Show the tasks waiting in a queue, in the order they will run."""
    q = Queue.get(name)
    rows = q.tasks(offset, limit)
    if as_json:
        emit_json(
            {
                "name": name,
                "length": len(q),
                "tasks": [
                    {
                        "position": e.position,
                        "id": e.task_id,
                        "priority": e.priority,
                        "name": r.name if r else None,
                        "project": r.project if r else None,
                    }
                    for e, r in rows
                ],
            }
        )
        return
    table(
        ["#", "id", "name", "project", "priority", "queued"],
        [
            (
                e.position,
                e.task_id,
                r.name if r else "?",
                r.project if r else "",
                e.priority,
                ago(r.queued_at) if r else "",
            )
            for e, r in rows
        ],
        title=f"{name}: {len(q)} waiting",
    )


@queue.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete even when tasks wait (they go back to draft).")
def delete_cmd(name, force) -> None:
    """Delete a queue (refused while tasks wait, unless --force)."""
    returned = Queue(name).delete(force=force)
    suffix = f"; {len(returned)} task(s) back to draft" if returned else ""
    say(f"queue {name} deleted{suffix}")


@queue.command("move")
@click.argument("task_id")
@click.option("--top", "where", flag_value="top", help="To the front of its queue.")
@click.option("--bottom", "where", flag_value="bottom", help="To the back of its queue.")
@click.option("--position", type=click.IntRange(min=0), help="To this 0-based position.")
def move_cmd(task_id, where, position) -> None:
    """Move a waiting task within its queue."""
    if (where is None) == (position is None):
        raise InvalidInput("give exactly one of --top, --bottom or --position N")
    record = TaskStore(Queue("_").connection).get(task_id)
    if not record.execution.queue:
        raise InvalidInput(f"task {task_id} is not waiting in any queue (it is {record.status.value})")
    q = Queue(record.execution.queue)
    new_position = q.move(task_id, position if position is not None else where)
    say(f"{task_id} now at position {new_position} in {q.name}")
