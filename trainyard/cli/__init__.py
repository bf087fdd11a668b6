"""The ``trainyard`` command line."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from ..queues.errors import TrainyardError
from .alert_cmds import alerts
from .autoscale_cmds import autoscale
from .hpo_cmds import hpo
from .output import fail
from .pipefile_cmds import COMMANDS as PIPEFILE_COMMANDS
from .pipeline_cmds import pipeline
from .queue_cmds import queue
from .schedule_cmds import schedule
from .server_cmds import down, status, up
from .task_cmds import task
from .web_cmds import web
from .worker_cmds import worker


class _Group(click.Group):
    """Turns trainyard errors into one line on stderr and a meaningful exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrainyardError as exc:
            fail(str(exc), exc.exit_code)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first.get("loc", ()))
            fail(f"invalid value for {loc}: {first.get('msg')}" if loc else f"invalid value: {first.get('msg')}")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trainyard")
def cli() -> None:
    """trainyard: a distributed task queue for ML work that needs nothing but Redis.

    Exit codes: 0 ok, 1 error (bad input, not found, refused), 2 usage, 3 Redis unreachable,
    4 wait timed out.
    """


cli.add_command(up)
cli.add_command(down)
cli.add_command(status)
cli.add_command(task)
cli.add_command(queue)
cli.add_command(worker)
cli.add_command(pipeline)
cli.add_command(schedule)
cli.add_command(web)
cli.add_command(alerts)
cli.add_command(autoscale)
cli.add_command(hpo)
for _command in PIPEFILE_COMMANDS:
    pipeline.add_command(_command)


def main() -> None:
    cli(prog_name="trainyard")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
