-- Concurrency limiter: take one slot of an identifier, if one is free.
-- KEYS[1]  the identifier's sorted set: members are lease tokens, scores their ends (epoch ms)
-- ARGV[1]  the clock (µs, or -1 for TIME)    ARGV[2] the new lease's token
-- ARGV[3]  max_in_flight                      ARGV[4] the lease in ms
-- A lease is held while NOW < its end. Returns {acquired, held, ends, now}: when acquired,
-- held counts the new lease and ends is its end; when refused, ends is the earliest end.
local token = ARGV[2]
local limit = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local held = redis.call('ZCOUNT', KEYS[1], '(' .. NOW, '+inf')
if held >= limit then
  -- Refused before anything is written: not even expired leases are swept.
  local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. NOW, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return {0, held, tonumber(first[2]), NOW}
end
-- Sweep the leases of crashed holders, so the set never grows past max_in_flight.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', NOW)
local ends = NOW + lease
redis.call('ZADD', KEYS[1], ends, token)
-- The key lives as long as its longest lease (leases may differ in length).
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], tonumber(last[2]) - NOW)
return {1, held + 1, ends, NOW}
