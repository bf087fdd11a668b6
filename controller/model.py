"""A pipeline run as stored in Redis: its steps (the DAG), parameters, and each step's state."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..queues.options import ExecutionOptions

StepStatus = Literal["pending", "queued", "running", "completed", "failed", "aborted", "cached", "skipped"]
RunStatus = Literal["pending", "running", "completed", "failed", "aborted"]
DONE_OK = ("completed", "cached")
FINISHED = ("completed", "cached", "failed", "aborted", "skipped")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionSpec(_Model):
    """A Python function turned into a step: its source travels in the step's task."""

    name: str
    source: str  # a standalone script: imports, the function, and the runner stub
    module_file: str | None = None  # where it came from (for messages)
    repository: str | None = None  # the git checkout holding the module, for local imports
    commit: str | None = None
    diff: str | None = None
    working_dir: str = "."
    requirements: list[str] = Field(default_factory=list)


class StepSpec(ExecutionOptions):
    """One step of a pipeline: what it runs, its inputs, and its execution options (inherited, so
    they are defined once, in ``queues/options.py``)."""

    name: str
    base_task: str | None = None  # task id, or "project/name" (newest)
    function: FunctionSpec | None = None
    template: dict[str, Any] | None = None  # an inline task (TaskRecord fields, no id): pipeline-file jobs
    parents: list[str] = Field(default_factory=list)
    parameter_override: dict[str, Any] = Field(default_factory=dict)  # values may hold ${...} references
    configuration_overrides: dict[str, Any] = Field(default_factory=dict)
    kwargs: dict[str, Any] = Field(default_factory=dict)  # function steps: arguments (may hold references)
    returns: list[str] = Field(default_factory=list)  # function steps: names of the returned values
    queue: str | None = None
    cache: bool = False
    force_rerun: bool = False
    pre_callback: str | None = None  # "module:qualname"
    post_callback: str | None = None

    def execution_options(self) -> ExecutionOptions:
        """The step's execution options alone."""
        return ExecutionOptions.model_validate({name: getattr(self, name) for name in ExecutionOptions.model_fields})


class StepState(_Model):
    status: StepStatus = "pending"
    task_id: str | None = None
    attempt: int = 0
    cache_key: str | None = None
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    message: str | None = None


class PipelineRun(_Model):
    id: str  # the controller task's id
    name: str
    project: str = "default"
    version: str = "1.0.0"
    parameters: dict[str, Any] = Field(default_factory=dict)
    default_queue: str | None = None
    abort_on_failure: bool = True
    force_rerun: bool = False
    steps: dict[str, StepSpec] = Field(default_factory=dict)
    state: dict[str, StepState] = Field(default_factory=dict)
    status: RunStatus = "pending"
    message: str | None = None
    controller_queue: str | None = None  # where the controller runs (None: in a user's process)
    local_queue: str | None = None  # steps run by a private in-process worker (start_locally)
    created: float = Field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    rev: int = 0
