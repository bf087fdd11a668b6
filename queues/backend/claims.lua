-- Claims: the hash task id -> JSON {worker, host, queue, ts, pgid} while a worker holds the task,
-- and the reapers' lock. Called as EVALSHA <sha> 1 <key> <command> <args...>.

local command = table.remove(ARGV, 1)
local commands = {}

-- refresh: ARGV worker, now, then task id / pgid pairs (pgid '' when unknown).
-- Refreshes only claims that still exist and are this worker's: a task that ended meanwhile (its
-- claim deleted by the finish) must not get its claim back.
function commands.refresh()
  for i = 3, #ARGV, 2 do
    local raw = redis.call('HGET', KEYS[1], ARGV[i])
    if raw then
      local claim = cjson.decode(raw)
      if claim['worker'] == ARGV[1] then
        claim['ts'] = tonumber(ARGV[2])
        if ARGV[i + 1] ~= '' then claim['pgid'] = tonumber(ARGV[i + 1]) end
        redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(claim))
      end
    end
  end
  return 0
end

-- unlock: KEYS lock   ARGV token. Deletes the lock only while it still holds our token.
function commands.unlock()
  if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
  return 0
end

local run = commands[command]
if run == nil then return redis.error_reply('claims.lua: unknown command ' .. tostring(command)) end
return run()
