"""The Task record: everything a task is, as one pydantic model stored as JSON in Redis."""

from __future__ import annotations

import re
import time
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from .params import check_parameters

# One set of limits for every entry point (CLI, Python API, web API, pipelines): the record checks them.
NAME_MAX = 200  # characters of a task's name, project, and a tag
TAGS_MAX = 100  # tags on one task
COMMENT_MAX = 10_000  # characters of a comment

Label = Annotated[str, StringConstraints(max_length=NAME_MAX)]


class TaskStatus(str, Enum):
    DRAFT = "draft"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"

    def __str__(self) -> str:
        return self.value


FINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.ABORTED})


class TaskType(str, Enum):
    TRAINING = "training"
    TESTING = "testing"
    INFERENCE = "inference"
    DATA_PROCESSING = "data_processing"
    APPLICATION = "application"
    MONITOR = "monitor"
    CONTROLLER = "controller"
    OPTIMIZER = "optimizer"
    SERVICE = "service"
    QC = "qc"
    CUSTOM = "custom"

    def __str__(self) -> str:
        return self.value


class ExecutionMode(str, Enum):
    LOCAL = "local"
    VENV = "venv"
    CONDA = "conda"
    DOCKER = "docker"

    def __str__(self) -> str:
        return self.value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)


class Script(_Model):
    """What code runs: a script in a git repository, or a command."""

    repository: str | None = None  # URL (credentials stripped) or local path
    branch: str | None = None
    commit: str | None = None
    entry_point: str | None = None  # script path relative to working_dir
    command: list[str] | None = None  # argv, never a shell string
    working_dir: str = "."
    diff: str | None = None  # uncommitted changes, `git apply`-able
    source: str | None = None  # the whole script, for a standalone script outside git
    binary: str = "python"
    python: str | None = None  # wanted Python version, e.g. "3.11"
    requirements: list[str] = Field(default_factory=list)  # pip requirement lines
    conda_packages: list[str] = Field(default_factory=list)
    extra_index_urls: list[str] = Field(default_factory=list)


class Container(_Model):
    """Docker settings for docker mode."""

    image: str | None = None
    arguments: list[str] = Field(default_factory=list)
    setup_script: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class GpuRequest(_Model):
    count: int = Field(default=0, ge=0)
    min_memory_mb: int | None = Field(default=None, ge=0)


class Execution(_Model):
    """How and where it runs."""

    mode: ExecutionMode | None = None  # None: the worker's default
    queue: str | None = None
    priority: int = 0
    gpus: GpuRequest = Field(default_factory=GpuRequest)
    time_limit: float | None = Field(default=None, gt=0)  # seconds
    retries: int = Field(default=0, ge=0)
    env: dict[str, str] = Field(default_factory=dict)  # stored as given: no secrets here
    secret_env: dict[str, str] = Field(default_factory=dict)  # env var -> secret name, filled in by the worker
    memory: str | None = None  # container memory limit, docker's notation: "512m", "2g"
    cpus: float | None = Field(default=None, gt=0)  # container CPU limit

    @field_validator("memory")
    @classmethod
    def _memory_ok(cls, value: str | None) -> str | None:
        return _check_memory(value)


MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?[bkmgBKMG]?$")


def _check_memory(value: str | None) -> str | None:
    if value is not None and not MEMORY.match(value):
        raise ValueError(f"memory {value!r} is not a size such as 512m or 2g")
    return value


class Artifact(_Model):
    name: str
    uri: str
    sha256: str | None = None
    size: int | None = None
    content_type: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created: float = Field(default_factory=time.time)

    @property
    def url(self) -> str:
        return self.uri


class MetricSummary(_Model):
    last: float
    min: float
    max: float
    step: int | None = None
    count: int = 0


class Attempt(_Model):
    """One run of a task by a worker."""

    attempt: int
    worker: str | None = None
    host: str | None = None
    started: float | None = None
    ended: float | None = None
    outcome: str | None = None  # completed | failed | aborted | requeued | lost
    exit_code: int | None = None
    error: str | None = None


class Runtime(_Model):
    """What happened when it ran (filled by the worker)."""

    worker: str | None = None
    host: str | None = None
    gpus: list[str] = Field(default_factory=list)
    attempt: int = 0
    exit_code: int | None = None
    error: str | None = None
    log_tail: list[str] = Field(default_factory=list)
    abort_requested: bool = False
    log_uri: str | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    gpu_usage: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per GPU id, over the last attempt
    attempts: list[Attempt] = Field(default_factory=list)


class TaskRecord(_Model):
    """A task: identity, code, environment, parameters, results and status."""

    id: str
    name: Label
    project: Label = "default"
    type: TaskType = TaskType.TRAINING
    status: TaskStatus = TaskStatus.DRAFT
    status_message: str | None = None
    parent: str | None = None
    tags: list[Label] = Field(default_factory=list, max_length=TAGS_MAX)
    comment: Annotated[str, StringConstraints(max_length=COMMENT_MAX)] | None = None
    user: str | None = None
    created: float = Field(default_factory=time.time)
    updated: float = Field(default_factory=time.time)
    queued_at: float | None = None
    started: float | None = None
    ended: float | None = None
    script: Script = Field(default_factory=Script)
    container: Container = Field(default_factory=Container)
    execution: Execution = Field(default_factory=Execution)
    parameters: dict[str, Any] = Field(default_factory=dict)
    configuration: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, Artifact] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, dict[str, MetricSummary]] = Field(default_factory=dict)
    runtime: Runtime = Field(default_factory=Runtime)
    rev: int = 0

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("task name must not be empty")
        return value

    @field_validator("project")
    @classmethod
    def _project_ok(cls, value: str) -> str:
        if not value.strip() or "\n" in value:
            raise ValueError("project must be a non-empty single line")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters_ok(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_parameters(value)

    def to_json(self) -> bytes:
        """Compact JSON: defaults are left out, so small tasks stay small in Redis."""
        return self.model_dump_json(exclude_defaults=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> TaskRecord:
        return cls.model_validate_json(data)
