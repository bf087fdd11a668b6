"""A study's definition and state, and the book entry of one trial (both JSON in Redis)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SIGNS = ("min", "max", "min_global", "max_global")
ACTIVE = ("launching", "queued", "running", "stopping")
STUDY_FINAL = ("completed", "stopped", "failed")


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    series: str
    sign: str = "min"  # min / max: the last reported value; min_global / max_global: the extreme of all

    @property
    def direction(self) -> str:
        return "minimize" if self.sign.startswith("min") else "maximize"

    @property
    def label(self) -> str:
        return f"{self.title}/{self.series}"


class StudyDoc(BaseModel):
    """What the controller needs to run (and resume) a study."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    project: str = "default"
    base_task: str
    space: list[dict[str, Any]]  # Parameter.to_dict() of each dimension
    objectives: list[Objective]
    strategy: str = "RandomSearch"
    sampler: dict[str, Any] | None = None  # {"name", "kwargs"}
    pruner: dict[str, Any] | None = None
    queue: str = "default"
    max_concurrent: int = 10
    total_max_jobs: int = 10
    time_limit_per_job: float | None = None  # minutes
    min_iteration_per_job: int | None = None
    max_iteration_per_job: int | None = None
    optimization_time_limit: float | None = None  # minutes
    compute_time_limit: float | None = None  # minutes (sum of the trials' run times)
    save_top_k_tasks_only: int | None = None
    spawn_project: str | None = None
    reconcile_s: float = 30.0  # the slow backstop; events drive everything else
    callback: str | None = None  # "module:function" of job_complete_callback
    controller_queue: str | None = None
    local_queue: str | None = None
    status: str = "pending"  # pending | running | completed | stopped | failed
    message: str | None = None
    created: float = Field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    best: dict[str, Any] | None = None  # {"number", "task", "value", "params"}
    counts: dict[str, int] = Field(default_factory=dict)  # trials per state

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


class TrialEntry(BaseModel):
    """The controller's book entry of one trial: which task runs it and how it went."""

    model_config = ConfigDict(extra="ignore")

    number: int
    task: str
    state: str = "launching"  # launching | queued | running | stopping | completed | pruned | failed
    params: dict[str, Any] = Field(default_factory=dict)
    value: float | list[float] | None = None
    iteration: int | None = None
    steps: int = 0  # objective steps reported to Optuna
    last_step: int | None = None
    reason: str | None = None
    queued: float | None = None
    started: float | None = None
    ended: float | None = None
    decided: float | None = None  # when the controller decided to prune or stop it
    decided_after: str | None = None  # the metric stream entry id (server time of its XADD) it decided on
    callback_done: bool = False

    @property
    def active(self) -> bool:
        return self.state in ACTIVE
