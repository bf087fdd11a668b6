"""Writing new task records: every key of every task in one Lua script call (one round trip).

A new task is its record, its indexes, its name hint and name index entries, a ``created``
event and, when it is born queued, its RQ job hash and its place in the queue. Sending those as
~10 commands per task made the client pack and parse more than Redis worked; here the client
sends one ``EVALSHA`` whose arguments it built once per task, and the script does the same
writes (the sorted-set and hash ones batched per key; ``TaskStore.update`` and
``events.publish`` write the same shapes one at a time).

The script first checks that no id is taken, so a refused batch writes nothing; it runs
atomically, like the MULTI it replaces (a big batch holds Redis as long as that did).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from redis import Redis

from . import events, keys, rqjob
from .broker import INSERT_FN, PRIO_FN
from .record import TaskRecord

# Per task, after the header: id, record JSON, score, status, project, queue, name-hint field,
# name members (forward, reversed), job payload, job description, k, then k more index keys.
_FIXED = 12

CREATE_LUA = (
    PRIO_FN
    + INSERT_FN
    + """
local task_prefix, job_prefix, names, name_lex, name_rev = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local stream, maxlen, priority, ntasks = ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local i = 10
local common = {}
for j = 1, tonumber(ARGV[i]) do common[j] = ARGV[i + j] end
i = i + #common + 1
local job = {}
for j = 1, tonumber(ARGV[i]) do job[j] = ARGV[i + j] end
i = i + #job + 1
local first = i
for t = 1, ntasks do
  if redis.call('EXISTS', task_prefix .. ARGV[i]) == 1 then return t end
  i = i + FIXED + tonumber(ARGV[i + FIXED - 1])
end
-- many members per ZADD / HSET (in chunks: Lua's unpack has a stack limit)
local pending = {}
local function add(cmd, key, a, b)
  local list = pending[key]
  if list == nil then list = {cmd = cmd}; pending[key] = list end
  list[#list + 1] = a
  if b ~= nil then list[#list + 1] = b end
  if #list >= 1000 then redis.call(cmd, key, unpack(list)); pending[key] = nil end
end
local at_tail = false
i = first
for t = 1, ntasks do
  local id, score = ARGV[i], ARGV[i + 2]
  redis.call('SET', task_prefix .. id, ARGV[i + 1])
  for j = 1, #common do add('ZADD', common[j], score, id) end
  local k = tonumber(ARGV[i + FIXED - 1])
  for j = 1, k do add('ZADD', ARGV[i + FIXED - 1 + j], score, id) end
  add('HSET', names, ARGV[i + 6], id)
  add('ZADD', name_lex, 0, ARGV[i + 7])
  add('ZADD', name_rev, 0, ARGV[i + 8])
  if #KEYS > 0 then
    local jk = job_prefix .. id
    redis.call('DEL', jk)
    redis.call('HSET', jk, 'data', ARGV[i + 9], 'description', ARGV[i + 10], unpack(job))
    if at_tail then  -- the previous one (same priority) went last: so does this one (first in, first out)
      if priority ~= 0 then redis.call('HSET', KEYS[2], id, priority) end
      redis.call('RPUSH', KEYS[1], id)
    else
      at_tail = insert(id, priority, false) == redis.call('LLEN', KEYS[1]) - 1
    end
  end
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'task', id, 'kind', 'created',
             'status', ARGV[i + 3], 'prev', '', 'project', ARGV[i + 4], 'queue', ARGV[i + 5])
  i = i + FIXED + k
end
for key, list in pairs(pending) do redis.call(list.cmd, key, unpack(list)) end
return 0
""".replace("FIXED", str(_FIXED))
)


@dataclass(frozen=True)
class Born:
    """Where new records are born queued: the queue, their priority and the enqueue time."""

    queue: str
    priority: int
    now: float


def create(conn: Redis, records: Sequence[TaskRecord], index_keys, born: Born | None = None) -> bool:
    """Write ``records`` (new ids) with everything that goes with them; False when an id is taken
    (then nothing was written). ``index_keys(record)`` gives the sorted-set indexes of a record."""
    if not records:
        return True
    per_task = [index_keys(r) for r in records]
    common = set.intersection(*per_task)
    job: list = []
    queue_keys: list[str] = []
    if born is not None:
        queue_keys = [keys.rq_queue(born.queue), keys.priorities(born.queue), keys.RQ_QUEUES]
        for field, value in rqjob.queued_fields(born.queue, born.now).items():
            job += [field, value]
    args: list = [
        keys.task(""),
        keys.rq_job(""),
        keys.NAMES,
        keys.NAME_LEX,
        keys.NAME_REV,
        keys.EVENTS,
        events.STREAM_MAXLEN,
        born.priority if born is not None else 0,
        len(records),
        len(common),
        *sorted(common),
        len(job),
        *job,
    ]
    for record, own_keys in zip(records, per_task):
        extra = own_keys - common
        if born is not None:
            fields = rqjob.own_fields(record.id, record.name)
            data, description = fields["data"], fields["description"]
        else:
            data = description = ""
        args += [
            record.id,
            record.to_json(),
            repr(record.created),
            record.status.value,
            record.project,
            record.execution.queue or "",
            keys.name_field(record.project, record.name),
            keys.name_member(record.name, record.id),
            keys.name_member_reversed(record.name, record.id),
            data,
            description,
            len(extra),
            *extra,
        ]
    script = conn.register_script(CREATE_LUA)
    return int(script(keys=queue_keys, args=args)) == 0


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of records is built and written.

    A batch allocates many objects that all stay alive (the records and their nested models),
    so every collection pass walks a growing heap and finds nothing to free: with thousands of
    records that was most of the time spent building them. Reference counting still frees as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
