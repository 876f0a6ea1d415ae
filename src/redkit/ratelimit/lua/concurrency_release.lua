-- Concurrency limiter: give a slot back.
-- KEYS[1]  the identifier's sorted set   ARGV[1] the clock   ARGV[2] the lease's token
-- Returns 1 when the lease was still held (and now is not), 0 when it had ended or was gone.
local token = ARGV[2]
local ends = redis.call('ZSCORE', KEYS[1], token)
if not ends then
  return 0
end
redis.call('ZREM', KEYS[1], token)
if tonumber(ends) <= NOW then
  return 0 -- it had expired already: its slot was free before this call
end
return 1
