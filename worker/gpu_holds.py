"""GPU holds in Redis, per host and per task: any number of worker processes on one machine can
share a pool of GPUs and never double-book one.

Each GPU of a host has a hash of the tasks holding it (``task -> worker|memory MB|expires``).
A hold is taken for all of a task's GPUs at once or not at all, refreshed by its worker's
heartbeat, and dropped when the task ends; a crashed worker's holds expire on their own. A GPU
normally holds one task; with ``share`` > 1 it holds up to that many (``--gpu-share``), as long
as their declared memory fits.
"""

from __future__ import annotations

from redis import Redis

from ..queues.backend import fleet
from ..queues.workers import worker_ttl_s


class GpuHolds:
    """This worker's holds on the GPUs of its host."""

    def __init__(self, conn: Redis, host: str, worker: str):
        self.conn, self.host, self.worker = conn, host, worker

    def acquire(
        self, task_id: str, gpus: list[int], memory_mb: int = 0, share: int = 1, totals_mb: list[int] | None = None
    ) -> bool:
        """Hold ``gpus`` for ``task_id`` (all or none)."""
        if not gpus:
            return True
        totals = totals_mb or [0] * len(gpus)
        return fleet.hold_gpus(
            self.conn, self.host, task_id, self.worker, gpus, memory_mb, worker_ttl_s(), share, totals
        )

    def refresh(self, holds: dict[str, tuple[list[int], int]]) -> None:
        """Keep the holds of running tasks alive: ``{task id: (gpus, memory MB)}``."""
        if holds:
            fleet.refresh_gpu_holds(self.conn, self.host, self.worker, holds, worker_ttl_s())

    def release(self, task_id: str, gpus: list[int]) -> None:
        """Drop this worker's holds for ``task_id`` (never another worker's hold on the same task)."""
        if gpus:
            fleet.release_gpus(self.conn, self.host, task_id, self.worker, gpus)

    def holders(self, gpus: list[int]) -> dict[int, dict[str, tuple[str, int]]]:
        """Live holds per GPU: ``{gpu: {task id: (worker, declared memory MB)}}`` (expired ones left out)."""
        return fleet.gpu_holders(self.conn, self.host, gpus)
