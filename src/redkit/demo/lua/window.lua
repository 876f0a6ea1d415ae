-- A fixed-window counter for the walkthrough: admit ARGV[3] more hits if the window has room.
-- KEYS[1]  the window's counter
-- ARGV[1]  the limit per window
-- ARGV[2]  the window length in milliseconds
-- ARGV[3]  the cost of this request
-- Returns {admitted (1/0), hits counted in the window, milliseconds until the window resets}.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + cost > limit then
  -- A refused request consumes nothing.
  return {0, used, redis.call('PTTL', KEYS[1])}
end
used = redis.call('INCRBY', KEYS[1], cost)
if used == cost then
  redis.call('PEXPIRE', KEYS[1], window)
end
return {1, used, redis.call('PTTL', KEYS[1])}
