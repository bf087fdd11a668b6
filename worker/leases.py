"""GPU holds in Redis, per host and per task: any number of worker processes on one machine can
share a pool of GPUs and never double-book one.

Each GPU of a host has a hash of the tasks holding it (``task -> worker|memory MB|expires``).
A hold is taken for all of a task's GPUs at once or not at all, refreshed by its worker's
heartbeat, and dropped when the task ends; a crashed worker's holds expire on their own. A GPU
normally holds one task; with ``share`` > 1 it holds up to that many (``--gpu-share``), as long
as their declared memory fits.
"""

from __future__ import annotations

import time

from redis import Redis

from ..queues import keys
from ..queues.backend import scripts
from ..queues.workers import WORKER_TTL_S


class GpuHolds:
    def __init__(self, conn: Redis, host: str, worker: str):
        self.conn, self.host, self.worker = conn, host, worker

    def _key(self, gpu: int) -> str:
        return keys.gpu_holds(self.host, gpu)

    def acquire(
        self, task_id: str, gpus: list[int], memory_mb: int = 0, share: int = 1, totals_mb: list[int] | None = None
    ) -> bool:
        """Hold ``gpus`` for ``task_id`` (all or none)."""
        if not gpus:
            return True
        totals = totals_mb or [0] * len(gpus)
        got = scripts.run(
            self.conn,
            "gpus",
            "hold",
            [self._key(g) for g in gpus],
            [task_id, self.worker, int(memory_mb), time.time(), WORKER_TTL_S, max(1, share), *totals],
        )
        return int(got) == 0

    def refresh(self, holds: dict[str, tuple[list[int], int]]) -> None:
        """Keep the holds of running tasks alive: ``{task id: (gpus, memory MB)}``."""
        if not holds:
            return
        expires = time.time() + WORKER_TTL_S
        with self.conn.pipeline(transaction=False) as pipe:
            for task_id, (gpus, memory) in holds.items():
                for gpu in gpus:
                    pipe.hset(self._key(gpu), task_id, f"{self.worker}|{int(memory)}|{expires:.3f}")
            pipe.execute()

    def release(self, task_id: str, gpus: list[int]) -> None:
        """Drop this worker's holds for ``task_id`` (never another worker's hold on the same task)."""
        if gpus:
            scripts.run(self.conn, "gpus", "release", [self._key(g) for g in gpus], [task_id, self.worker])

    def holders(self, gpus: list[int]) -> dict[int, dict[str, tuple[str, int]]]:
        """Live holds per GPU: ``{gpu: {task id: (worker, declared memory MB)}}`` (expired ones left out)."""
        now = time.time()
        out: dict[int, dict[str, tuple[str, int]]] = {}
        with self.conn.pipeline(transaction=False) as pipe:
            for gpu in gpus:
                pipe.hgetall(self._key(gpu))
            replies = pipe.execute()
        for gpu, holds in zip(gpus, replies):
            live = {}
            for field, value in holds.items():
                worker, _, rest = value.decode().partition("|")
                memory, _, expires = rest.rpartition("|")
                if float(expires or 0) >= now:
                    live[field.decode()] = (worker, int(memory or 0))
            out[gpu] = live
        return out
