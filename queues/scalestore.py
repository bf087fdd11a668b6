"""The autoscaler's configuration, its instances and its decisions, kept in Redis.

The configuration says, per queue, which resources may serve it (in order of preference) and how
many of each at most, with the idle and spin-up timeouts and an optional cost cap. Every instance
the autoscaler starts is recorded before it is started, so a restarted service knows them all.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from redis import Redis

from .backend import scaling
from .errors import InvalidInput
from .queue_registry import QueueRegistry

DECISIONS_MAXLEN = 10_000


class Ec2Options(BaseModel):
    model_config = {"extra": "forbid"}

    instance_type: str
    ami_id: str
    region: str = "us-east-1"
    subnet_id: str | None = None
    key_name: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)
    spot: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    setup: list[str] = Field(default_factory=list)  # extra boot-script lines before the worker starts
    pip_spec: str = "trainyard"  # what the boot script installs


class Resource(BaseModel):
    """One kind of machine the autoscaler may start."""

    model_config = {"extra": "forbid"}

    driver: Literal["process", "docker", "ec2"]
    hourly_price: float = Field(default=0.0, ge=0)
    worker_args: list[str] = Field(default_factory=list)  # more `trainyard worker` options (--gpus 0, ...)
    worker_command: list[str] = Field(default_factory=lambda: ["trainyard"])
    image: str | None = None  # docker: the worker image
    volumes: dict[str, str] = Field(default_factory=dict)  # docker: host path -> container path (read-only)
    network: str = "host"  # docker
    env: dict[str, str] = Field(default_factory=dict)
    ec2: Ec2Options | None = None

    @model_validator(mode="after")
    def _driver_options(self) -> Resource:
        if self.driver == "docker" and not self.image:
            raise ValueError("a docker resource needs an image")
        if self.driver == "ec2" and self.ec2 is None:
            raise ValueError("an ec2 resource needs ec2 options (instance_type, ami_id, ...)")
        return self


class QueueResource(BaseModel):
    model_config = {"extra": "forbid"}

    resource: str
    max: int

    @field_validator("max")
    @classmethod
    def _max(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"a maximum cannot be below zero (got {value})")
        return value


class ScalerConfig(BaseModel):
    """What the autoscaler may start for which queue (ClearML's queues/resource_configurations)."""

    model_config = {"extra": "forbid"}

    resources: dict[str, Resource]
    queues: dict[str, list[QueueResource]]
    idle_timeout_s: float = Field(default=15 * 60, ge=0)  # ClearML's max_idle_time_min = 15
    spin_up_timeout_s: float = Field(default=30 * 60, gt=0)  # ClearML's max_spin_up_time_min = 30
    cost_cap_per_hour: float | None = Field(default=None, ge=0)  # instances x hourly price, at most
    worker_prefix: str = "scale"

    @model_validator(mode="after")
    def _references(self) -> ScalerConfig:
        owner: dict[str, str] = {}
        for queue, entries in self.queues.items():
            for entry in entries:
                if entry.resource not in self.resources:
                    raise ValueError(f"queue {queue!r} names unknown resource {entry.resource!r}")
                if owner.setdefault(entry.resource, queue) != queue:
                    raise ValueError(
                        f"resource {entry.resource!r} serves two queues ({owner[entry.resource]}, {queue})"
                    )
        return self

    def queue_of(self, resource: str) -> str | None:
        return next((q for q, entries in self.queues.items() if any(e.resource == resource for e in entries)), None)


class Instance(BaseModel):
    """One machine (process, container, VM) the autoscaler started."""

    id: str
    resource: str
    queue: str
    worker: str  # the worker name it was told to register under
    driver: str
    cloud_id: str = ""
    state: Literal["starting", "running", "draining"] = "starting"
    price: float = 0.0
    started: float = Field(default_factory=time.time)
    registered: float | None = None
    idle_since: float | None = None
    drained: float | None = None


# -- configuration ---------------------------------------------------------------------------------
def configure(conn: Redis, config: ScalerConfig) -> ScalerConfig:
    """Store the configuration; every queue it names must exist."""
    broker = QueueRegistry(conn)
    for queue in config.queues:
        if not broker.exists(queue):
            raise InvalidInput(f"no queue named {queue!r}: the autoscaler can only serve a queue that exists")
    scaling.put_config(conn, config.model_dump_json())
    return config


def load_config(conn: Redis) -> ScalerConfig | None:
    raw = scaling.config_json(conn)
    return ScalerConfig.model_validate_json(raw) if raw else None


# -- instances ---------------------------------------------------------------------------------------
def instances(conn: Redis) -> list[Instance]:
    return sorted((Instance.model_validate_json(v) for v in scaling.instance_entries(conn)), key=lambda i: i.started)


def save_instance(conn: Redis, instance: Instance) -> None:
    scaling.put_instance(conn, instance.id, instance.model_dump_json())


def drop_instance(conn: Redis, instance_id: str) -> None:
    scaling.drop_instance(conn, instance_id)


# -- decisions and leadership -------------------------------------------------------------------------
def decide(conn: Redis, queue: str, action: str, reason: str, **fields: Any) -> None:
    """Log a decision with its reason (shown by `autoscale show` and the web app)."""
    entry = {"at": time.time(), "queue": queue, "action": action, "reason": reason, **fields}
    scaling.append_decision(conn, json.dumps(entry), DECISIONS_MAXLEN)


def decisions(conn: Redis, count: int = 50) -> list[dict[str, Any]]:
    """The newest decisions, newest first."""
    return [json.loads(raw) for raw in scaling.decisions(conn, count)]


def lead(conn: Redis, name: str, ttl_s: float) -> bool:
    """Become (or stay) the one acting autoscaler; the others stand by until its lease lapses."""
    return scaling.lead(conn, name, int(ttl_s * 1000))


def leader(conn: Redis) -> str | None:
    return scaling.leader(conn)


def resign(conn: Redis, name: str) -> None:
    scaling.resign(conn, name)
