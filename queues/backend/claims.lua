-- Claims: the hash task id -> JSON {worker, host, queue, ts, pgid} while a worker holds the task.
-- Called as EVALSHA <sha> 1 <claims> <command> <args...>.

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

local run = commands[command]
if run == nil then return redis.error_reply('claims.lua: unknown command ' .. tostring(command)) end
return run()
