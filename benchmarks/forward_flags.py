"""Run the ``trainyard`` CLI with the worker flags it parses but does not pass on forwarded.

Used by ``bench_envs.py`` when the worker command as shipped drops ``--installer`` (its probe
shows it): ``trainyard worker`` builds its ``WorkerConfig`` without ``installer``,
``env_cache_size``, ``docker_image`` and ``docker_network``, so ``--installer pip`` still builds
with uv. Nothing in trainyard is changed on disk: in this process, the ``WorkerConfig`` the CLI
calls is wrapped to fill in those fields from the parsed command line when the CLI left them
out (a CLI that passes them is not affected). Run by hand::

    python benchmarks/forward_flags.py worker -q bench --cpu-only --mode venv --installer pip
"""

from __future__ import annotations

import sys
from typing import Any

import click

from trainyard.cli import cli, worker_cmds

FORWARDED = ("installer", "env_cache_size", "docker_image", "docker_network")


def install() -> None:
    original = worker_cmds.WorkerConfig

    def config(**kwargs: Any):
        params = click.get_current_context().params
        for name in FORWARDED:
            if name not in kwargs and params.get(name) is not None:
                kwargs[name] = params[name]
        return original(**kwargs)

    worker_cmds.WorkerConfig = config  # type: ignore[assignment, misc]


def main(argv: list[str] | None = None) -> int:
    install()
    try:
        cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="trainyard", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
