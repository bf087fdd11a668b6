-- Queue lists: RQ's list `rq:queue:<q>` of task ids kept sorted by priority (higher first, equal
-- priorities first in, first out), with non-zero priorities in a hash beside it.
-- Called as EVALSHA <sha> <keys> <command> <args...>; KEYS[1] is always the list, KEYS[2] (when
-- given) the priorities hash.

local command = table.remove(ARGV, 1)

local function prio(x)
  local v = redis.call('HGET', KEYS[2], x)
  if v then return tonumber(v) end
  return 0
end

local function setprio(x, p)
  if p ~= 0 then redis.call('HSET', KEYS[2], x, p) else redis.call('HDEL', KEYS[2], x) end
end

-- Insert `id` with priority `p` (ahead of all when `front`); KEYS[3] is rq:queues.
-- Returns the 0-based position the task landed at.
local function insert(id, p, front)
  redis.call('SADD', KEYS[3], KEYS[1])
  local n = redis.call('LLEN', KEYS[1])
  if n == 0 then setprio(id, p); redis.call('RPUSH', KEYS[1], id); return 0 end
  if front then
    local hp = prio(redis.call('LINDEX', KEYS[1], 0))
    if hp > p then p = hp end
    setprio(id, p); redis.call('LPUSH', KEYS[1], id); return 0
  end
  setprio(id, p)
  if prio(redis.call('LINDEX', KEYS[1], -1)) >= p then redis.call('RPUSH', KEYS[1], id); return n end
  if prio(redis.call('LINDEX', KEYS[1], 0)) < p then redis.call('LPUSH', KEYS[1], id); return 0 end
  local start = 0
  while start < n do
    local items = redis.call('LRANGE', KEYS[1], start, start + 499)
    for i, x in ipairs(items) do
      if prio(x) < p then redis.call('LINSERT', KEYS[1], 'BEFORE', x, id); return start + i - 1 end
    end
    start = start + 500
  end
  redis.call('RPUSH', KEYS[1], id)
  return n
end

local commands = {}

-- A token on the queue's bell (KEYS[4], when given) for each task that joins it, never more tokens
-- than tasks: one waiting worker wakes per task.
local function ring(n)
  if KEYS[4] == nil then return end
  local missing = redis.call('LLEN', KEYS[1]) - redis.call('LLEN', KEYS[4])
  if n < missing then missing = n end
  for _ = 1, missing do redis.call('LPUSH', KEYS[4], '1') end
end

-- push: KEYS list, priorities, rq:queues, bell   ARGV task id, priority, front (0/1) -> position
function commands.push()
  local at = insert(ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1')
  ring(1)
  return at
end

-- move: KEYS list, priorities   ARGV task id, where (top|bottom|index), index
-- -> the new 0-based position, or -1 when the task is not in this queue
function commands.move()
  local id, where, idx = ARGV[1], ARGV[2], tonumber(ARGV[3])
  if redis.call('LREM', KEYS[1], 1, id) == 0 then return -1 end
  local own = prio(id)
  local n = redis.call('LLEN', KEYS[1])
  if n == 0 then redis.call('RPUSH', KEYS[1], id); return 0 end
  if where == 'top' or (where == 'index' and idx <= 0) then
    local hp = prio(redis.call('LINDEX', KEYS[1], 0))
    if hp > own then own = hp end
    setprio(id, own); redis.call('LPUSH', KEYS[1], id); return 0
  end
  if where == 'bottom' or idx >= n then
    local tp = prio(redis.call('LINDEX', KEYS[1], -1))
    if tp < own then own = tp end
    setprio(id, own); redis.call('RPUSH', KEYS[1], id); return n
  end
  local pivot = redis.call('LINDEX', KEYS[1], idx)
  local lo, hi = prio(pivot), prio(redis.call('LINDEX', KEYS[1], idx - 1))
  if own < lo then own = lo end
  if own > hi then own = hi end
  setprio(id, own)
  redis.call('LINSERT', KEYS[1], 'BEFORE', pivot, id)
  return idx
end

-- claim: KEYS list, priorities, claims, inflight, draining, bell, claims index   ARGV worker, host, ts,
-- queue, expected head id, limit
-- Pops the head only if it is still the expected id and the queue is under its concurrency limit
-- (0: none), and records the claim. -> the id, or false; -1 and nothing for a worker marked
-- draining (the autoscaler's scale-down cannot race a claim)
function commands.claim()
  if redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 1 then return -1 end
  if tonumber(ARGV[6]) > 0 and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[6]) then return false end
  if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[5] then return false end
  local id = redis.call('LPOP', KEYS[1])
  redis.call('HDEL', KEYS[2], id)
  local claim = cjson.encode({worker = ARGV[1], host = ARGV[2], ts = tonumber(ARGV[3]), queue = ARGV[4]})
  redis.call('HSET', KEYS[3], id, claim)
  redis.call('ZADD', KEYS[7], ARGV[3], id)
  redis.call('ZADD', KEYS[4], ARGV[3], id)
  local left = redis.call('LLEN', KEYS[1])
  if KEYS[6] ~= nil and redis.call('LLEN', KEYS[6]) > left then redis.call('LTRIM', KEYS[6], 0, left - 1) end
  return id
end

-- drop_head: KEYS list   ARGV id, task key prefix ('' to skip the check)
-- Pops the head only if it is still `id` and (with a prefix) no task has that id. -> 1 or 0
function commands.drop_head()
  if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
  if ARGV[2] ~= '' and redis.call('EXISTS', ARGV[2] .. ARGV[1]) == 1 then return 0 end
  redis.call('LPOP', KEYS[1])
  return 1
end

-- create: new task records with everything that goes with them (queues/bulk.py builds the args).
-- KEYS: list, priorities, rq:queues, bell when the tasks are born queued, else none.
-- ARGV: task prefix, job prefix, name hint hash, name-lex zset, name-rev zset, event stream,
-- stream maxlen, priority, number of tasks, n + n index keys common to all, m + m job fields
-- shared by all, then per task FIXED values (id, record JSON, score, status, project, queue,
-- name-hint field, name members forward and reversed, job payload, job description, k) and k
-- more index keys. -> 0, or the 1-based number of the first task whose id is taken (then
-- nothing was written)
local FIXED = 12
function commands.create()
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
  if #KEYS > 0 then ring(ntasks) end
  return 0
end

local run = commands[command]
if run == nil then return redis.error_reply('queue.lua: unknown command ' .. tostring(command)) end
return run()
