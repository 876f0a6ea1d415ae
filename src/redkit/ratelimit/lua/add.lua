-- Add a count that was already admitted locally (the cached fixed window) to its counter.
-- KEYS[1]  the window's counter
-- ARGV[1]  the count to add (a refund when negative)   ARGV[2] the window in ms
-- Returns the counter's new value.
local delta = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + delta < 0 then
  delta = -used -- a refund gives back at most what the window has used
end
if delta == 0 then
  return used
end
local total = redis.call('INCRBY', KEYS[1], delta)
if total == delta then
  redis.call('PEXPIRE', KEYS[1], window)
end
return total
