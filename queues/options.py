"""Execution options, defined once: how and where a task runs (mode, image, requirements, GPUs,
limits, retries, environment).

``Task.create``, ``Pipeline.add_step`` / ``add_function_step``, ``@component``, ``StepSpec`` (pipeline
steps, pipeline-file jobs), the CLI and the web API all take these names and hand them to
``ExecutionOptions``, which checks them (an unknown name or a bad value is one ``InvalidInput``
line) and writes them into a task record (``apply``). Values left at their default leave the
record's own value alone, so a step's options override only what they name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InvalidInput
from .record import ExecutionMode, TaskRecord
from .record import _check_memory as check_memory


class ExecutionOptions(BaseModel):
    """Every execution option with its default (``None``, 0 or empty: "not set")."""

    model_config = ConfigDict(extra="forbid")

    mode: ExecutionMode | None = Field(None, description="Execution mode (default: the worker's).")
    docker_image: str | None = Field(None, description="Image for docker mode.")
    docker_arguments: list[str] = Field(default_factory=list, description="An extra `docker run` argument.")
    docker_setup_script: str | None = Field(None, description="Shell lines run in the container before the task.")
    requirements: list[str] | None = Field(  # None: keep the task's; []: none
        None,
        description="A pip requirement.",
        json_schema_extra={"flag": "--requirement"},
    )
    conda_packages: list[str] = Field(default_factory=list, description="A conda package, for conda mode.")
    python: str | None = Field(None, description="Python version for venv/conda modes, e.g. 3.11.")
    gpus: int = Field(0, ge=0, description="Number of GPUs the task needs.")
    gpu_memory_mb: int | None = Field(None, ge=0, description="Free memory each of its GPUs must have.")
    time_limit: float | None = Field(None, gt=0, description="Seconds before it is stopped.")
    retries: int = Field(0, ge=0, description="Extra attempts after a failure or a lost worker.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="An environment variable (stored as given).",
        json_schema_extra={"metavar": "VAR=VALUE"},
    )
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="VAR gets the worker-held secret SECRET (TRAINYARD_SECRET_<SECRET> on the worker); "
        "no value is stored.",
        json_schema_extra={"metavar": "VAR=SECRET"},
    )
    memory: str | None = Field(None, description="Container memory limit in docker mode, e.g. 512m or 2g.")
    cpus: float | None = Field(None, gt=0, description="Container CPU limit in docker mode.")

    @field_validator("memory")
    @classmethod
    def _memory_ok(cls, value: str | None) -> str | None:
        return check_memory(value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    @classmethod
    def of(cls, options: Mapping[str, Any], what: str = "execution option") -> ExecutionOptions:
        """Checked options; InvalidInput names an unknown option or the first bad value."""
        unknown = sorted(set(options) - set(cls.model_fields))
        if unknown:
            raise InvalidInput(f"unknown {what} {', '.join(unknown)} (known: {', '.join(cls.model_fields)})")
        try:
            return cls.model_validate({k: v for k, v in options.items() if v is not None})  # None: not given
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise InvalidInput(f"invalid value: {where}: {error['msg']}") from None

    def given(self) -> dict[str, Any]:
        """The options that differ from their defaults."""
        defaults = ExecutionOptions()
        return {k: v for k, v in self if v != getattr(defaults, k)}

    def apply(self, record: TaskRecord) -> None:
        """Write the options that are set into ``record`` (others leave its values alone)."""
        script, container, execution = record.script, record.container, record.execution
        setters = {
            "mode": lambda v: setattr(execution, "mode", v),
            "docker_image": lambda v: setattr(container, "image", v),
            "docker_arguments": lambda v: setattr(container, "arguments", list(v)),
            "docker_setup_script": lambda v: setattr(container, "setup_script", v),
            "requirements": lambda v: setattr(script, "requirements", list(v)),
            "conda_packages": lambda v: setattr(script, "conda_packages", list(v)),
            "python": lambda v: setattr(script, "python", v),
            "gpus": lambda v: setattr(execution.gpus, "count", v),
            "gpu_memory_mb": lambda v: setattr(execution.gpus, "min_memory_mb", v),
            "time_limit": lambda v: setattr(execution, "time_limit", v),
            "retries": lambda v: setattr(execution, "retries", v),
            "env": lambda v: setattr(execution, "env", {**execution.env, **v}),
            "secret_env": lambda v: setattr(execution, "secret_env", {**execution.secret_env, **v}),
            "memory": lambda v: setattr(execution, "memory", v),
            "cpus": lambda v: setattr(execution, "cpus", v),
        }
        for name, value in self.given().items():  # an explicit [] of requirements clears them
            setters[name](value)
