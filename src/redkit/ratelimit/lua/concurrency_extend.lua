-- Concurrency limiter: renew a lease that is still held, to end `lease` ms from now.
-- KEYS[1]  the identifier's sorted set   ARGV[1] the clock   ARGV[2] the lease's token
-- ARGV[3]  the new lease in ms
-- Returns {renewed, ends}: an ended lease is never revived, its slot may be someone else's.
local token = ARGV[2]
local lease = tonumber(ARGV[3])
local ends = redis.call('ZSCORE', KEYS[1], token)
if not ends then
  return {0, 0}
end
if tonumber(ends) <= NOW then
  redis.call('ZREM', KEYS[1], token)
  return {0, 0}
end
ends = NOW + lease
redis.call('ZADD', KEYS[1], 'XX', ends, token)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], tonumber(last[2]) - NOW)
return {1, ends}
