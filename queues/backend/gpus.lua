-- GPU holds: one hash per GPU of a host, task id -> "worker|memory MB|expires".
-- Called as EVALSHA <sha> <hold keys> <command> <args...>.

local command = table.remove(ARGV, 1)
local commands = {}

-- hold: KEYS hold keys   ARGV task, worker, memory MB, now, ttl s, share (1 = exclusive), total MB per GPU...
-- Takes every GPU for the task or none. -> 0, else the 1-based index of the first GPU that is not free
function commands.hold()
  local task, worker, mem, now, ttl, share = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
    tonumber(ARGV[5]), tonumber(ARGV[6])
  for i, key in ipairs(KEYS) do
    local holds = redis.call('HGETALL', key)
    local n, reserved = 0, 0
    for j = 1, #holds, 2 do
      local field, value = holds[j], holds[j + 1]
      local w, m, expires = string.match(value, '^(.*)|(%d+)|([%d%.]+)$')
      if field == task and w == worker then
        -- already ours (a retry of hold): not counted
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
end

-- release: KEYS hold keys   ARGV task, worker. Drops the task's hold only where this worker owns it.
function commands.release()
  for _, key in ipairs(KEYS) do
    local value = redis.call('HGET', key, ARGV[1])
    if value and string.sub(value, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then redis.call('HDEL', key, ARGV[1]) end
  end
  return 0
end

local run = commands[command]
if run == nil then return redis.error_reply('gpus.lua: unknown command ' .. tostring(command)) end
return run()
