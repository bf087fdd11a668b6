-- Wake-ups without broadcast: a queue's bell (a list of tokens, at most one per waiting task) and
-- the per-worker inboxes. Called as EVALSHA <sha> <keys> <command> <args...>.

local command = table.remove(ARGV, 1)
local commands = {}

-- ring: KEYS queue list, bell. Adds a token when the queue holds more tasks than the bell has
-- tokens (a slot came free, or a woken worker passes a task it cannot take on). -> 1 or 0
function commands.ring()
  if redis.call('LLEN', KEYS[2]) < redis.call('LLEN', KEYS[1]) then
    redis.call('LPUSH', KEYS[2], '1')
    return 1
  end
  return 0
end

-- wake_all: KEYS waiter set   ARGV inbox key prefix, message, ttl s. Puts `message` in the inbox
-- of every worker in the set and empties it (the waiters re-register when they still wait).
-- -> how many were woken
function commands.wake_all()
  local names = redis.call('SMEMBERS', KEYS[1])
  for _, name in ipairs(names) do
    local inbox = ARGV[1] .. name
    redis.call('LPUSH', inbox, ARGV[2])
    redis.call('LTRIM', inbox, 0, 99)
    redis.call('EXPIRE', inbox, tonumber(ARGV[3]))
  end
  if #names > 0 then redis.call('DEL', KEYS[1]) end
  return #names
end

local run = commands[command]
if run == nil then return redis.error_reply('wake.lua: unknown command ' .. tostring(command)) end
return run()
