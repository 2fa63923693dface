-- Takes back the expired leases of one holder (or of every holder): their holder stopped
-- renewing, and the caller has checked whatever else had to be checked (for a database
-- connection: that Postgres no longer lists the holder's connections).
--
-- KEYS[1]  leases     ZSET   member ("<holder>#<n>") -> deadline, ms
-- KEYS[2]  since      HASH   member -> when it was granted, ms
-- KEYS[3]  reclaimed  STRING how many slots were taken back so far
-- ARGV[1]  the channel that hears of freed slots
-- ARGV[2]  the resource (the message published on it)
-- ARGV[3]  the holder, or "" for every holder
-- Only leases still expired now are taken: one renewed in the meantime is left alone.
-- Returns how many were taken back.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[3] .. '#'
local removed = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)) do
  if ARGV[3] == '' or string.sub(m, 1, #prefix) == prefix then
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
    removed = removed + 1
  end
end
if removed > 0 then
  redis.call('INCRBY', KEYS[3], removed)
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return removed
