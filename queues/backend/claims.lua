-- Claims: the hash task id -> JSON {worker, host, queue, ts, pgid} while a worker holds the task,
-- its index (a sorted set of the same task ids scored by when each claim was last written or
-- refreshed: the reaper reads only its old end), and the reapers' lock.
-- Called as EVALSHA <sha> <keys> <command> <args...>; for the claims commands KEYS[1] is the hash
-- and KEYS[2] the index. Every script and transaction that writes or drops a claim keeps both.

local command = table.remove(ARGV, 1)
local commands = {}

-- refresh: KEYS claims, index   ARGV worker, now, then task id / pgid pairs (pgid '' when unknown).
-- Refreshes only claims that still exist and are this worker's: a task that ended meanwhile (its
-- claim deleted by the finish) must not get its claim back.
function commands.refresh()
  for i = 3, #ARGV, 2 do
    local raw = redis.call('HGET', KEYS[1], ARGV[i])
    local ok, claim = false, nil
    if raw then ok, claim = pcall(cjson.decode, raw) end
    if ok and type(claim) == 'table' and claim['worker'] == ARGV[1] then  -- an unreadable one: left to the reaper
      claim['ts'] = tonumber(ARGV[2])
      if ARGV[i + 1] ~= '' then claim['pgid'] = tonumber(ARGV[i + 1]) end
      redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(claim))
      redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
    end
  end
  return 0
end

-- put: KEYS claims, index   ARGV task id, claim JSON, its time[, 'nx': only when the task has no
-- claim (the reaper's adoption of a running task left without one)]. -> 1, or 0 when 'nx' found one
function commands.put()
  if ARGV[4] == 'nx' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end

-- release: KEYS claims, index[, in-flight zset]   ARGV task id, worker ('' for whoever holds it)
-- Drops the claim (only while it is that worker's) and the in-flight entry. -> 1, or 0 when the
-- claim was not that worker's (nothing dropped)
function commands.release()
  if ARGV[2] ~= '' then
    local raw = redis.call('HGET', KEYS[1], ARGV[1])
    if not raw then return 0 end
    local ok, claim = pcall(cjson.decode, raw)
    if not ok or type(claim) ~= 'table' or claim['worker'] ~= ARGV[2] then return 0 end
  end
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  if KEYS[3] ~= nil then redis.call('ZREM', KEYS[3], ARGV[1]) end
  return 1
end

-- unclaimed: KEYS claims, the running tasks' status index. -> the running task ids that have no
-- claim (only a failover that lost a claim's write but kept the start, or a bug, leaves one): the
-- reaper's adoption reads them in one call, however many tasks run
function commands.unclaimed()
  local out = {}
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if redis.call('HEXISTS', KEYS[1], id) == 0 then out[#out + 1] = id end
  end
  return out
end

-- A claim the index lacks (written by an older trainyard) joins it with its own time (0 when its
-- JSON has none: it is judged at once).
local function backfill()
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if not redis.call('ZSCORE', KEYS[2], all[i]) then
      local ok, claim = pcall(cjson.decode, all[i + 1])
      local ts = 0
      if ok and type(claim) == 'table' and tonumber(claim['ts']) then ts = tonumber(claim['ts']) end
      redis.call('ZADD', KEYS[2], ts, all[i])
    end
  end
end

-- stale: KEYS claims, index   ARGV bound. The claims last written or refreshed at or before the
-- bound, as a flat list id, claim JSON, ...: O(1) plus what it reads. The index is made whole
-- first when its size differs from the hash's (claims of an older trainyard); an id of the index
-- without a claim leaves it; a claim whose own time is newer than its score (refreshed by an older
-- trainyard, which knows no index) moves up to that time instead of being returned.
function commands.stale()
  if redis.call('HLEN', KEYS[1]) ~= redis.call('ZCARD', KEYS[2]) then backfill() end
  local bound = tonumber(ARGV[1])
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
    local raw = redis.call('HGET', KEYS[1], id)
    if raw then
      local ok, claim = pcall(cjson.decode, raw)
      local ts = ok and type(claim) == 'table' and tonumber(claim['ts'])
      if ts and ts > bound then
        redis.call('ZADD', KEYS[2], ts, id)
      else
        out[#out + 1] = id
        out[#out + 1] = raw
      end
    else
      redis.call('ZREM', KEYS[2], id)
    end
  end
  return out
end

-- unlock: KEYS lock   ARGV token. Deletes the lock only while it still holds our token.
function commands.unlock()
  if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
  return 0
end

local run = commands[command]
if run == nil then return redis.error_reply('claims.lua: unknown command ' .. tostring(command)) end
return run()
