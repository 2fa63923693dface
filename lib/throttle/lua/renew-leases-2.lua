-- A holder renews every lease it holds of one resource, in one call.
--
-- KEYS[1]  leases  ZSET  member ("<holder>#<n>") -> deadline, ms
-- KEYS[2]  since   HASH  member -> when it was granted, ms
-- ARGV[1]  lease length, ms
-- ARGV[2]  the holder
-- ARGV[3]  the channel that hears of freed slots
-- ARGV[4]  the resource (the message published on it)
-- ARGV[5 ..]  every member the holder holds now
-- A listed member missing from KEYS[1] is added again (Redis restarted or was flushed: the
-- holder still has what the lease stands for, so the count must show it). A member of this
-- holder that is not listed was released while Redis was unreachable, and is removed.
-- Returns { renewed, readded, dropped }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[1])
local listed = {}
local renewed, readded, dropped = 0, 0, 0
for i = 5, #ARGV do
  listed[ARGV[i]] = true
  if redis.call('ZADD', KEYS[1], deadline, ARGV[i]) == 1 then
    readded = readded + 1
    redis.call('HSET', KEYS[2], ARGV[i], now)
  else
    renewed = renewed + 1
  end
end
local prefix = ARGV[2] .. '#'
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #prefix) == prefix and not listed[m] then
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
    dropped = dropped + 1
  end
end
if dropped > 0 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return { renewed, readded, dropped }
