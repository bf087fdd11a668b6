-- The autoscaler's leadership: one service acts, the others stand by.
-- Called as EVALSHA <sha> 1 <leader key> <command> <args...>.

local command = table.remove(ARGV, 1)
local commands = {}

-- lead: ARGV name, lease ms. Takes a free lease or extends one's own; 1 when leading.
function commands.lead()
  local holder = redis.call('GET', KEYS[1])
  if holder and holder ~= ARGV[1] then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end

-- resign: ARGV name. Gives the lease up, if it is one's own.
function commands.resign()
  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end

local run = commands[command]
if run == nil then return redis.error_reply('scale.lua: unknown command ' .. tostring(command)) end
return run()
