-- Alerts: raise one (once per rule, subject, transition), and turn held alerts into a digest.
-- Called as EVALSHA <sha> <nkeys> <keys...> <command> <args...>.

local command = table.remove(ARGV, 1)
local commands = {}

-- raise: KEYS seen, outbox, rate, held, due
--        ARGV seen ttl s, message JSON, summary JSON, burst, rate ttl s, rule id, digest time
-- Returns 0 (raised before), 1 (queued to send), 2 (over the rate: held for the digest).
function commands.raise()
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
  local sent = redis.call('INCR', KEYS[3])
  if sent == 1 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
  if sent <= tonumber(ARGV[4]) then
    redis.call('XADD', KEYS[2], '*', 'data', ARGV[2])
    return 1
  end
  redis.call('RPUSH', KEYS[4], ARGV[3])
  redis.call('ZADD', KEYS[5], 'NX', ARGV[7], ARGV[6])
  return 2
end

-- digest: KEYS due, held, outbox   ARGV rule id, now
-- The one caller that removes the rule from ``due`` moves all its held alerts into one outbox entry.
function commands.digest()
  local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not due or tonumber(due) > tonumber(ARGV[2]) then return 0 end
  redis.call('ZREM', KEYS[1], ARGV[1])
  local items = redis.call('LRANGE', KEYS[2], 0, -1)
  redis.call('DEL', KEYS[2])
  if #items == 0 then return 0 end
  redis.call('XADD', KEYS[3], '*', 'data', cjson.encode({digest = true, rule = ARGV[1], items = items}))
  return #items
end

local run = commands[command]
if run == nil then return redis.error_reply('alerts.lua: unknown command ' .. tostring(command)) end
return run()
