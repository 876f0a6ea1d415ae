-- Fixed window, in @upstash/ratelimit's layout: one counter per epoch-aligned window at
-- "<prefix>:<identifier>:<window number>", expiring one window after its first write.
-- KEYS[1]  the identifier's base key; KEYS[2] (optional) the counter, when the caller named it
-- ARGV[1]  the clock (µs, or -1 for TIME)    ARGV[2] rate: cost, negative refunds, 0 peeks
-- ARGV[3]  the limit                          ARGV[4] the window in ms
-- Returns {allowed, limit, remaining, reset, retry_ms, now}; retry_ms -1 means "never".
local rate = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local bucket = math.floor(NOW / window)
local key = KEYS[2] or (KEYS[1] .. ':' .. bucket)
local reset = (bucket + 1) * window
if rate > 0 then
  -- The common case in one write: count first, and take it back if that went past the limit.
  local used = redis.call('INCRBY', key, rate)
  if used > limit then
    -- Refused: nothing stays written, so a refused request costs nothing (Upstash counts it).
    if used == rate and redis.call('PTTL', key) == -1 then
      redis.call('DEL', key) -- this INCRBY created it (a counter refunded to 0 has its TTL)
    else
      redis.call('DECRBY', key, rate)
    end
    used = used - rate
    local retry = -1
    if rate <= limit then
      retry = reset - NOW
    end
    return {0, limit, math.max(0, limit - used), reset, retry, NOW}
  end
  if used == rate then
    redis.call('PEXPIRE', key, window)
  end
  return {1, limit, limit - used, reset, 0, NOW}
end

local used = tonumber(redis.call('GET', key) or '0')
if rate < 0 and used > 0 then
  -- A refund gives back at most what this window has used.
  used = redis.call('INCRBY', key, math.max(rate, -used))
end
return {1, limit, math.max(0, limit - used), reset, 0, NOW}
