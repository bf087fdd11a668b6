"""Run ``trainyard worker`` with its environment builder's steps timed, and the flags it drops forwarded.

Used by ``bench_envs.py`` for its venv-mode workers; can be run by hand::

    python benchmarks/env_worker.py [--steps steps.jsonl] [--forward-flags] worker -q bench --mode venv ...

Nothing in trainyard is changed on disk; in this process:

- ``--steps FILE``: every installer step the environment cache runs (``EnvCache.run``: creating
  the virtualenv, the uv/pip install, the freeze) appends ``{"what", "start", "end"}``
  (``time.time()``) to FILE.
- ``--forward-flags``: ``trainyard worker`` parses ``--installer``, ``--env-cache-size``,
  ``--docker`` and ``--docker-network`` but builds its ``WorkerConfig`` without them; the
  ``WorkerConfig`` the CLI calls is wrapped to fill those fields in from the parsed command line
  when the CLI left them out (a CLI that passes them is not affected).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import click

from trainyard.cli import cli, worker_cmds
from trainyard.worker.envs import EnvCache

FORWARDED = ("installer", "env_cache_size", "docker_image", "docker_network")


def forward_flags() -> None:
    original = worker_cmds.WorkerConfig

    def config(**kwargs: Any):
        params = click.get_current_context().params
        for name in FORWARDED:
            if name not in kwargs and params.get(name) is not None:
                kwargs[name] = params[name]
        return original(**kwargs)

    worker_cmds.WorkerConfig = config  # type: ignore[assignment, misc]


def time_steps(path: str) -> None:
    out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the process's life
    lock = threading.Lock()
    original = EnvCache.run

    def timed(self, argv, what, env=None):
        start = time.time()
        try:
            return original(self, argv, what, env)
        finally:
            line = json.dumps({"what": what, "argv0": str(argv[0]), "start": start, "end": time.time()})
            with lock:
                out.write(line + "\n")

    EnvCache.run = timed  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("worker") if "worker" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", help="JSON-lines file the environment builder's steps are appended to")
    parser.add_argument("--forward-flags", action="store_true", help="pass the worker flags the CLI drops on")
    args = parser.parse_args(argv[:split])
    if args.steps:
        time_steps(args.steps)
    if args.forward_flags:
        forward_flags()
    try:
        cli.main(args=argv[split:], prog_name="trainyard", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
