-- Gives leases back, and tells the nodes waiting for the resource.
--
-- KEYS[1]  leases  ZSET  member -> deadline, ms
-- KEYS[2]  since   HASH  member -> when it was granted, ms
-- ARGV[1]  the channel that hears of freed slots
-- ARGV[2]  the resource (the message published on it)
-- ARGV[3 ..]  the members released
-- Returns how many were held.
local removed = 0
for i = 3, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
if removed > 0 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return removed
