-- Grants concurrency slots of one resource as leases: each expires unless its holder renews it.
-- Time is Redis's own clock, so the nodes' clocks need not agree.
--
-- KEYS[1]  leases     ZSET   member ("<holder>#<n>") -> deadline, ms
-- KEYS[2]  since      HASH   member -> when it was granted, ms
-- KEYS[3]  limit      STRING the resource's concurrency limit for the whole cluster
-- KEYS[4]  reclaimed  STRING how many slots were taken back from holders that stopped renewing
-- ARGV[1]  lease length, ms
-- ARGV[2]  the limit to write when KEYS[3] is missing (first use, or Redis lost it)
-- ARGV[3]  "1": expired leases are returned here, their holder presumed dead;
--          "0": they are not (database connections: the caller checks Postgres first)
-- ARGV[4]  n, how many holders follow whose expired leases may be taken over (0 or more)
-- ARGV[5 .. 4+n]  those holders (the caller found them expired and gone from the cluster)
-- ARGV[5+n ..]    the members to grant, in order
-- Returns { granted, reclaimed }: the first `granted` members now hold a lease.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local leaseMs = tonumber(ARGV[1])
local limit = tonumber(redis.call('GET', KEYS[3]))
if not limit then
  limit = tonumber(ARGV[2])
  redis.call('SET', KEYS[3], limit)
end
local reclaimed = 0
if ARGV[3] == '1' then
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
  for _, m in ipairs(dead) do
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
  end
  reclaimed = #dead
end
local adopters = tonumber(ARGV[4])
local first = 5 + adopters
local wanted = #ARGV - first + 1
local free = limit - redis.call('ZCARD', KEYS[1])
if free < wanted and adopters > 0 then
  local takeable = {}
  for i = 5, 4 + adopters do takeable[ARGV[i]] = true end
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
  for _, m in ipairs(expired) do
    if free >= wanted then break end
    if takeable[string.match(m, '^(.*)#[^#]*$')] then
      redis.call('ZREM', KEYS[1], m)
      redis.call('HDEL', KEYS[2], m)
      reclaimed = reclaimed + 1
      free = free + 1
    end
  end
end
if reclaimed > 0 then redis.call('INCRBY', KEYS[4], reclaimed) end
local granted = math.max(0, math.min(free, wanted))
for i = 0, granted - 1 do
  redis.call('ZADD', KEYS[1], now + leaseMs, ARGV[first + i])
  redis.call('HSET', KEYS[2], ARGV[first + i], now)
end
return { granted, reclaimed }
