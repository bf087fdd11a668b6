"""The drivers' one small interface, and which driver serves which kind of resource."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ...queues.scalestore import Resource


class Driver(Protocol):
    """Starts and stops the machines (processes, containers, VMs) that run one worker each."""

    def spin_up(self, resource: Resource, worker: str, queue: str) -> str:
        """Start a machine whose worker registers as ``worker`` on ``queue``; returns its id."""

    def spin_down(self, cloud_id: str) -> None:
        """Stop it (its worker was drained first, or never registered); never raises if it is gone."""

    def list(self) -> list[str]:
        """The ids of the machines this driver started that are still there."""

    def console_log(self, cloud_id: str) -> str:
        """The machine's recent console output (for `autoscale show` and stuck machines)."""


def worker_argv(resource: Resource, worker: str, queue: str) -> list[str]:
    """The worker's command line: never through a shell."""
    return [*resource.worker_command, "worker", "--queue", queue, "--name", worker, *resource.worker_args]


def make_drivers(home: Path, redis_url: str) -> dict[str, Driver]:
    """One driver per kind; the EC2 one is made when first needed (boto3 reads its credentials then)."""
    from .ec2 import Ec2Driver
    from .local import DockerDriver, ProcessDriver

    return {"process": ProcessDriver(home, redis_url), "docker": DockerDriver(redis_url), "ec2": Ec2Driver(redis_url)}
