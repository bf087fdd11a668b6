"""GPU leases in Redis, per host: two worker processes on one machine never hold the same GPU."""

from __future__ import annotations

from redis import Redis

from ..queues import keys
from ..queues.errors import InvalidInput
from ..queues.workers import WORKER_TTL_S

# KEYS: lease keys   ARGV: holder, ttl ms. All or nothing: returns the index of a key held by someone else, or 0.
ACQUIRE_LUA = """
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder and holder ~= ARGV[1] then return i end
end
for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
return 0
"""

# KEYS: lease keys   ARGV: holder, ttl ms. Refresh or release only what the holder still holds.
REFRESH_LUA = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    if ARGV[2] == '0' then redis.call('DEL', key) else redis.call('PEXPIRE', key, ARGV[2]) end
    n = n + 1
  end
end
return n
"""


class GpuLeases:
    def __init__(self, conn: Redis, host: str, holder: str):
        self.conn, self.host, self.holder = conn, host, holder
        self._acquire = conn.register_script(ACQUIRE_LUA)
        self._refresh = conn.register_script(REFRESH_LUA)

    def _keys(self, gpus: list[int]) -> list[str]:
        return [keys.gpu_lease(self.host, g) for g in gpus]

    def acquire(self, gpus: list[int]) -> None:
        """Lease all of ``gpus`` or none; refuses with the holder named."""
        if not gpus:
            return
        taken = self._acquire(keys=self._keys(gpus), args=[self.holder, int(WORKER_TTL_S * 1000)])
        if taken:
            gpu = gpus[int(taken) - 1]
            holder = self.conn.get(keys.gpu_lease(self.host, gpu))
            name = holder.decode() if holder else "another worker"
            raise InvalidInput(f"GPU {gpu} on {self.host} is leased by worker {name!r}; give this worker other GPUs")

    def refresh(self, gpus: list[int]) -> int:
        return int(self._refresh(keys=self._keys(gpus), args=[self.holder, int(WORKER_TTL_S * 1000)])) if gpus else 0

    def release(self, gpus: list[int]) -> None:
        if gpus:
            self._refresh(keys=self._keys(gpus), args=[self.holder, 0])

    def holders(self, gpus: list[int]) -> dict[int, str | None]:
        values = self.conn.mget(self._keys(gpus)) if gpus else []
        return {g: (v.decode() if v else None) for g, v in zip(gpus, values)}
