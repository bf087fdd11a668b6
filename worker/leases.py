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
from ..queues.workers import WORKER_TTL_S

# KEYS: hold keys   ARGV: task, worker, memory MB, now, ttl s, share (1 = exclusive), total MB per GPU...
# Returns 0 when every GPU was taken for the task, else the 1-based index of the first GPU that is not free.
ACQUIRE_LUA = """
local task, worker, mem, now, ttl, share = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), tonumber(ARGV[6])
for i, key in ipairs(KEYS) do
  local holds = redis.call('HGETALL', key)
  local n, reserved = 0, 0
  for j = 1, #holds, 2 do
    local field, value = holds[j], holds[j + 1]
    local w, m, expires = string.match(value, '^(.*)|(%d+)|([%d%.]+)$')
    if field == task and w == worker then
      -- already ours (a retry of acquire): not counted
    elseif expires == nil or tonumber(expires) < now then
      redis.call('HDEL', key, field)
    else
      n = n + 1
      reserved = reserved + tonumber(m)
    end
  end
  if n >= share then return i end
  local total = tonumber(ARGV[6 + i])
  if share > 1 and total > 0 and reserved + mem > total then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('HSET', key, task, worker .. '|' .. mem .. '|' .. string.format('%.3f', now + ttl))
end
return 0
"""

# KEYS: hold keys   ARGV: task, worker. Drops the task's hold only where this worker owns it.
RELEASE_LUA = """
for _, key in ipairs(KEYS) do
  local value = redis.call('HGET', key, ARGV[1])
  if value and string.sub(value, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then redis.call('HDEL', key, ARGV[1]) end
end
return 0
"""


class GpuHolds:
    def __init__(self, conn: Redis, host: str, worker: str):
        self.conn, self.host, self.worker = conn, host, worker
        self._acquire = conn.register_script(ACQUIRE_LUA)
        self._release = conn.register_script(RELEASE_LUA)

    def _key(self, gpu: int) -> str:
        return keys.gpu_holds(self.host, gpu)

    def acquire(
        self, task_id: str, gpus: list[int], memory_mb: int = 0, share: int = 1, totals_mb: list[int] | None = None
    ) -> bool:
        """Hold ``gpus`` for ``task_id`` (all or none)."""
        if not gpus:
            return True
        totals = totals_mb or [0] * len(gpus)
        got = self._acquire(
            keys=[self._key(g) for g in gpus],
            args=[task_id, self.worker, int(memory_mb), time.time(), WORKER_TTL_S, max(1, share), *totals],
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
            self._release(keys=[self._key(g) for g in gpus], args=[task_id, self.worker])

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
