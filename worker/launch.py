"""What to start for a task: argv, working folder and environment (shared by every mode)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..queues.config import SECRET_PREFIX, VARIABLES
from ..queues.errors import TrainyardError
from ..queues.params import section
from ..queues.record import TaskRecord, TaskType
from ..runtime.task_api import ENV_RUN_DIR, ENV_TASK_ID

# never handed to task code (controllers get the connection explicitly): the secret settings,
# nor any TRAINYARD_SECRET_* (a task gets the secrets it names, under the names it asks for)
WITHHELD_ENV = tuple(v.name for v in VARIABLES if v.secret and "<" not in v.name)
WITHHELD_PREFIX = SECRET_PREFIX


if TYPE_CHECKING:
    from .containers import DockerSpec


class PrepareError(TrainyardError):
    """The task cannot be started here (missing entry point, bad source, failed install...)."""


@dataclass
class LaunchSpec:
    """What a mode's ``prepare`` says to start; its ``launch`` starts it."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    mode: str = "local"  # the mode (worker/modes/) whose launch starts it
    docker: DockerSpec | None = None  # docker mode's container
    release: list[Callable[[], None]] = field(default_factory=list)  # run when the task has ended


def args_flags(params: Mapping[str, Any]) -> list[str]:
    """``Args/`` parameters as argparse flags: ``--lr 0.1``; True -> ``--flag``; False and None
    are left out; lists -> ``--xs 1 2``; dicts -> one JSON string."""
    flags: list[str] = []
    for name, value in section(params, "Args").items():
        flag = name if name.startswith("-") else f"--{name}"
        if value is None or value is False:
            continue
        if value is True:
            flags.append(flag)
        elif isinstance(value, list):
            flags.append(flag)
            flags.extend(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in value)
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def task_env(record: TaskRecord, run_dir: Path, gpu_env: Mapping[str, str], redis_url: str | None) -> dict[str, str]:
    """The worker's environment, minus Redis credentials, plus the task's own settings."""
    env = {k: v for k, v in os.environ.items() if k not in WITHHELD_ENV and not k.startswith(WITHHELD_PREFIX)}
    env.update(record.execution.env)
    env.update(gpu_env)
    env.update(
        {
            ENV_TASK_ID: record.id,
            "TRAINYARD_ATTEMPT": str(record.runtime.attempt),  # with the id: how every process of the attempt
            "TRAINYARD_WORKER": record.runtime.worker or "",  # is found, however it detached (worker/guard.py)
            ENV_RUN_DIR: str(run_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if record.type in (TaskType.CONTROLLER, TaskType.OPTIMIZER) and redis_url:
        env["TRAINYARD_REDIS_URL"] = redis_url  # controllers and optimisers clone and enqueue: they need Redis
    return env
