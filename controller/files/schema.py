"""The pipeline file and action file formats as pydantic models (the JSON Schema is generated from them)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, field_validator, model_validator

from ...queues.record import NAME_MAX, ExecutionMode
from .cron import CronExpression, TimeZoneName

ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"  # job, step, input and output ids (the seeds' rule, max 64)
ID = re.compile(ID_PATTERN)
JobId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvValue = str | int | float | bool
ParamType = Literal["string", "number", "integer", "boolean", "array", "object"]
Duration = Annotated[float, Field(gt=0)] | Annotated[str, StringConstraints(pattern=r"^\d+(\.\d+)?\s*(s|m|h)?$")]
SCHEMA_ID = "https://trainyard.dev/schema/pipeline.v1.json"
ModeName = Literal[tuple(m.value for m in ExecutionMode)]  # the execution modes, as plain strings


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Param(_Model):
    """A typed value given when a run starts (``--param k=v``, a trigger, or its default)."""

    type: ParamType | None = None  # None: taken from the default (string when there is none)
    default: Any = None
    required: bool = False
    description: str | None = None
    options: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {"default": value}


class ActionObject(_Model):
    """The object form of ``action``: a repository (``owner/repo``) at a tag, optionally from ``git``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    tag: str = Field(default="latest", min_length=1)  # latest: the default branch (DataTorch's default)
    git: str | None = None  # clone URL (or local path); default: the configured actions source
    file: str | None = None  # the action file's name; default action.yaml, then action-datatorch.yaml


class TestReports(_Model):
    """JUnit XML reports a step writes: stored, counted per step, shown in the web app."""

    junit: list[str] = Field(min_length=1)  # paths or globs relative to the job's folder
    fail_on_failure: bool = False  # a failed or erroring test (or a missing report) fails the step

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if isinstance(value, (str, list)):
            value = {"junit": value}
        if isinstance(value, dict) and isinstance(value.get("junit"), str):
            value = {**value, "junit": [value["junit"]]}
        return value


class Step(_Model):
    """One step of a job: a ``run`` command or an ``action`` with ``inputs``."""

    id: Id | None = None
    name: str | None = None
    run: str | None = None
    action: str | ActionObject | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    if_: str | bool | None = Field(default=None, alias="if")
    timeout: Duration | None = None
    cache: bool | None = None  # action steps: reuse outputs for the same action commit and inputs
    tests: TestReports | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if (self.run is None) == (self.action is None):
            raise ValueError("a step needs exactly one of 'run' (a command) or 'action' (a reusable unit)")
        if self.run is not None and self.inputs:
            raise ValueError("'inputs' belong to 'action' steps ('run' steps read values through 'env')")
        if self.run is not None and self.cache:
            raise ValueError("'cache' applies to 'action' steps (their outputs are kept per action and inputs)")
        return self


class Job(_Model):
    """A group of steps run in order, in one working folder, by one task on one worker."""

    name: str | None = None
    needs: list[JobId] | JobId = Field(default_factory=list)  # always a list once validated
    queue: str | None = None
    gpus: int = Field(default=0, ge=0)
    mode: ModeName | None = None
    image: str | None = None
    requirements: list[str] = Field(default_factory=list)
    python: str | None = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    timeout: Duration | None = None
    retries: int = Field(default=0, ge=0, le=20)
    if_: str | bool | None = Field(default=None, alias="if")
    outputs: dict[Id, Any] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    @field_validator("needs", mode="before")
    @classmethod
    def _one_need(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("requirements", mode="before")
    @classmethod
    def _requirement_text(cls, value: Any) -> Any:
        return [line.strip() for line in value.splitlines() if line.strip()] if isinstance(value, str) else value


class ManualTrigger(_Model):
    """Started by a person (``trainyard pipeline trigger NAME --input k=v``) with typed inputs."""

    inputs: dict[Id, Param] = Field(default_factory=dict)


class ScheduleTrigger(_Model):
    """Started on a cron schedule (5 fields, or 6 with seconds last: croniter's order)."""

    cron: CronExpression
    timezone: TimeZoneName = "UTC"
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)


TaskStatusName = Literal["completed", "failed", "aborted", "running", "queued"]


class TaskTrigger(_Model):
    """Started when a task (or a pipeline run) in ``project`` reaches one of ``status``."""

    kind: Literal["task", "pipeline"] = "task"
    project: str | None = None
    status: list[TaskStatusName] | TaskStatusName = Field(default_factory=lambda: ["completed"])
    tags: list[str] = Field(default_factory=list)
    queue: str | None = None
    name: str | None = None  # a task name (tasks) or a pipeline name (pipelines)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("status", mode="before")
    @classmethod
    def _one_status(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Triggers(_Model):
    manual: ManualTrigger | None = None
    schedule: list[ScheduleTrigger] = Field(default_factory=list)
    task: list[TaskTrigger] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):  # on: [manual]
            return {name: None for name in value}
        if isinstance(value, dict):
            value = dict(value)
            if "manual" in value and value["manual"] is None:
                value["manual"] = {}
            for key in ("schedule", "task"):
                if isinstance(value.get(key), dict):
                    value[key] = [value[key]]
        return value


class PipelineFile(_Model):
    """A pipeline file: ``name``, typed ``params``, triggers (``on``) and ``jobs``."""

    schema_: str | None = Field(default=None, alias="$schema")
    name: str = Field(min_length=1, max_length=NAME_MAX)  # the record's limits: its runs' tasks carry them
    project: str = Field(default="default", min_length=1, max_length=NAME_MAX)
    version: str = "1.0.0"
    description: str | None = None
    queue: str | None = None  # default queue of every job
    fail_fast: bool = False  # True: the first failed job aborts the running ones and skips the rest
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    variables: dict[EnvName, EnvValue] = Field(default_factory=dict)  # plain values, overridable per run
    secrets: list[EnvName] = Field(default_factory=list)  # names only: values are held by the workers
    params: dict[Id, Param] = Field(default_factory=dict)
    on: Triggers = Field(default_factory=lambda: Triggers(manual=ManualTrigger()))
    jobs: dict[JobId, Job] = Field(min_length=1)

    _text: str = PrivateAttr(default="")  # the file as written (what gets registered)
    _filename: str = PrivateAttr(default="<editor>")
    _base_dir: str | None = PrivateAttr(default=None)  # local actions are found from here
    _actions: dict = PrivateAttr(default_factory=dict)  # describe(action) -> ResolvedAction

    @property
    def source_text(self) -> str:
        return self._text

    @property
    def filename(self) -> str:
        return self._filename

    @property
    def resolved_actions(self) -> dict:
        return self._actions


# -- action files ---------------------------------------------------------------------------------

InputType = Literal["string", "number", "float", "integer", "boolean", "array", "list", "object"]


class ActionInput(_Model):
    type: InputType = "string"
    required: bool = False
    default: Any = None
    description: str | None = None
    options: list[Any] | None = None
    multiline: bool = False
    deprecation_message: str | None = Field(default=None, alias="deprecationMessage")


class ActionOutput(_Model):
    type: Literal["string", "number", "integer", "boolean", "array", "object"] | None = None
    description: str | None = None
    multiline: bool = False
    options: list[Any] | None = None


class ActionEnv(_Model):
    description: str | None = None


class Runs(_Model):
    """How the action runs: a command, a Python file, a script, or a docker image."""

    using: Literal["cmd", "command", "commandline", "python", "script", "shell", "docker", "node", "human"]
    command: str | None = None
    main: str | None = None
    script: str | None = None  # DataTorch's runtime key for 'script' actions (same as main)
    image: str | None = None
    args: list[str] = Field(default_factory=list)
    entrypoint: str | None = None

    @model_validator(mode="after")
    def _needs(self) -> Runs:
        if self.using in ("cmd", "command", "commandline") and not self.command:
            raise ValueError(f"runs.using {self.using!r} needs 'command'")
        if self.using == "human":
            raise ValueError(
                "runs.using 'human': a human task is done by a person in DataTorch's web app, "
                "which trainyard does not have"
            )
        if self.using in ("python", "script", "shell", "node") and not (self.main or self.script):
            raise ValueError(f"runs.using {self.using!r} needs 'main' (the file to run)")
        if self.using == "docker" and not self.image:
            raise ValueError("runs.using 'docker' needs 'image'")
        return self


class ActionFile(_Model):
    schema_: str | None = Field(default=None, alias="$schema")
    name: str = Field(min_length=1, max_length=80)
    author: str | None = None
    description: str | None = None
    cache: bool = False
    inputs: dict[Id, ActionInput] = Field(default_factory=dict)
    outputs: dict[Id, ActionOutput] = Field(default_factory=dict)
    env: dict[EnvName, ActionEnv] = Field(default_factory=dict)
    runs: Runs


def json_schema() -> dict:
    """The published JSON Schema of pipeline files."""
    schema = _shorthand(PipelineFile.model_json_schema(by_alias=True))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _shorthand(node: Any) -> Any:
    """A param may be written as its default alone (``lr: 0.1``): say so wherever a Param is expected."""
    if isinstance(node, dict):
        if node == {"$ref": "#/$defs/Param"}:
            scalar = {"type": ["string", "number", "integer", "boolean", "array", "null"]}
            return {"anyOf": [node, scalar]}
        return {k: _shorthand(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_shorthand(v) for v in node]
    return node
