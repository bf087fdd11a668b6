"""Choosing the next task for a worker: queue order, GPU fit, memory, and no starvation.

For each of the worker's queues (strict order, or round robin) it looks at the head task and
the GPUs it needs: the queue's ``=N`` (``--queue dual=2``), else the task's own ``gpus`` count,
else all of the worker's GPUs (one task at a time, as ClearML's agent does). A GPU is free when
no task holds it (or, with ``--gpu-share K``, fewer than K do and the declared memory fits),
NVML reports enough free memory for the task's ``min_memory_mb``, and no foreign process (one
that is not a trainyard task) is using more than ``foreign_mem_mb`` of it.

Starvation policy: when the head of a queue does not fit, lower queues may *backfill* the free
GPUs, but only while that head has waited less than ``backfill_s`` seconds. After that the worker
holds the line — it takes nothing new until enough GPUs come free for the head — so a 2-GPU task
waits at most ``backfill_s`` plus the time the tasks already running take to end, however many
1-GPU tasks keep arriving. A task that needs more GPUs than the worker has is left for a bigger
worker and never blocks this one.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from redis import Redis

from ..queues.backend import queues as queue_lists
from ..queues.backend import records
from ..queues.record import TaskRecord
from .gpu_holds import GpuHolds
from .gpus import Nvml

log = logging.getLogger("trainyard.worker")


@dataclass(frozen=True)
class Choice:
    queue: str
    task_id: str
    gpus: list[int]
    memory_mb: int
    limit: int


@dataclass
class SchedulerConfig:
    gpus: list[int]
    queue_gpus: dict[str, int]
    share: int = 1
    backfill_s: float = 30.0
    foreign_mem_mb: int = 512  # a foreign process using more than this makes a GPU busy; < 0: ignore


class Scheduler:
    def __init__(self, conn: Redis, holds: GpuHolds, nvml: Nvml, config: SchedulerConfig):
        self.conn, self.holds, self.nvml, self.cfg = conn, holds, nvml, config
        # why the last ``choose`` took nothing from a queue with tasks waiting: "limit" (its
        # concurrency limit), "gpus" (not enough free GPUs now), "held" (the line is held for a
        # head that waits for GPUs), "too_big" (more GPUs than this worker has)
        self.blocked: dict[str, str] = {}

    def need(self, queue: str, record: TaskRecord) -> int:
        if queue in self.cfg.queue_gpus:
            return self.cfg.queue_gpus[queue]
        if record.execution.gpus.count > 0:
            return record.execution.gpus.count
        return len(self.cfg.gpus)

    def choose(self, queues: list[str], min_age_s: float = 0.0) -> Choice | None:
        """The next task to take (and its GPUs), or None: nothing fits now, or the line is held.
        ``min_age_s``: leave alone heads queued less than that long ago (another worker holds
        their wake-up token)."""
        self.blocked = {}
        found = queue_lists.heads(self.conn, queues)
        raw_heads = [h for h, _ in found]
        heads = [h.decode("utf-8", "replace") if h else None for h in raw_heads]
        limits = [limit for _, limit in found]
        raw = dict(zip(heads, raw_heads))
        waiting = [(q, h, lim) for q, h, lim in zip(queues, heads, limits) if h]
        if not waiting:
            return None
        records = self._records([h for _, h, _ in waiting])  # one round trip: this is the dispatch path
        free = self._free_gpus() if self.cfg.gpus else []
        now = time.time()
        for queue, head, limit in waiting:
            record = records.get(head)
            if record is None:
                if self._drop_foreign_head(queue, raw[head]) or self._set_aside(queue, raw[head]):
                    return self.choose(queues, min_age_s)
                continue
            if min_age_s and now - (record.queued_at or 0) < min_age_s:
                continue  # queued moments ago: its token woke another worker
            if limit and queue_lists.running_count(self.conn, queue) >= limit:
                self.blocked[queue] = "limit"
                continue  # this queue is at its concurrency limit: others may go on
            need = self.need(queue, record)
            memory = record.execution.gpus.min_memory_mb or 0
            if need == 0:
                return Choice(queue, head, [], 0, limit)
            if need > len(self.cfg.gpus):
                self.blocked[queue] = "too_big"
                continue  # never fits this worker: left for a bigger one
            fitting = [g for g, free_mb in free if free_mb is None or free_mb >= memory]
            if len(fitting) >= need:
                return Choice(queue, head, fitting[:need], memory, limit)
            self.blocked[queue] = "gpus"
            if now - (record.queued_at or now) >= self.cfg.backfill_s:
                for later, _, _ in waiting[[w[0] for w in waiting].index(queue) + 1 :]:
                    self.blocked.setdefault(later, "held")
                return None  # the head has waited long enough: hold the line for it
        return None

    def _set_aside(self, queue: str, head: bytes) -> bool:
        """A task record that is not even JSON (corrupted, or written by hand) at the head of a queue
        would block it forever: its id leaves the queue, the record stays for a person to look at.
        A JSON record this worker's schema refuses (a newer trainyard's?) only makes it skip the queue."""
        raw = records.record_json(self.conn, head.decode("utf-8", "replace"))
        if raw is None:
            return False
        try:
            if isinstance(json.loads(raw), dict):
                return False
        except (ValueError, RecursionError):
            pass
        removed = queue_lists.drop_head(self.conn, queue, head, unless_a_task=False)
        if removed:
            log.warning("set aside %r from queue %s: its task record cannot be read", head[:40], queue)
        return bool(removed)

    def _records(self, task_ids: list[str]) -> dict[str, TaskRecord | None]:
        """Head records by id; None for a missing one or one that does not parse."""
        out: dict[str, TaskRecord | None] = {}
        for task_id, raw in zip(task_ids, records.records_json(self.conn, task_ids)):
            try:
                out[task_id] = TaskRecord.from_json(raw) if raw is not None else None
            except ValueError as exc:
                log.warning("task %s at the head of a queue cannot be read: %s", task_id, exc)
                out[task_id] = None
        return out

    def _drop_foreign_head(self, queue: str, head: bytes) -> bool:
        """An id at the head of a queue that is no trainyard task (a raw RQ job, a stray value)
        would block the queue forever: it is removed, never run and never deserialised."""
        removed = queue_lists.drop_head(self.conn, queue, head, unless_a_task=True)
        if removed:
            log.warning("dropped %r from queue %s: it is not a trainyard task", head[:40], queue)
        return bool(removed)

    def _free_gpus(self) -> list[tuple[int, int | None]]:
        """The worker's GPUs that can take a task now, with their free memory (None: unknown)."""
        holders = self.holds.holders(self.cfg.gpus)
        devices = {d.index: d for d in self.nvml.devices()} if self.nvml.available() else {}
        out = []
        for gpu in self.cfg.gpus:
            holds = holders.get(gpu, {})
            held = len(holds)
            if held >= self.cfg.share:
                continue
            info = devices.get(gpu)
            if info is not None and not held and self.cfg.foreign_mem_mb >= 0:
                foreign = sum(mb for _, mb in info.processes)
                if foreign > self.cfg.foreign_mem_mb:
                    continue  # someone else is using this GPU
            free_mb = info.memory_free_mb if info is not None else None
            if held and info is not None and info.memory_total_mb > 0:
                # a shared GPU: what its holders declared is taken even before they allocate it
                unreserved = info.memory_total_mb - sum(mb for _, mb in holds.values())
                free_mb = min(free_mb, unreserved)
            out.append((gpu, free_mb))
        return out

    def totals(self, gpus: list[int]) -> list[int]:
        """Total memory per GPU (MB; 0 when unknown), for shared holds."""
        devices = {d.index: d for d in self.nvml.devices()} if self.nvml.available() else {}
        return [devices[g].memory_total_mb if g in devices else 0 for g in gpus]
