-- The clock: the head redkit puts in front of every script that reads the time.
-- ARGV[1] is the caller's clock in epoch microseconds, or -1 to read the server's own TIME
-- (so that every app server agrees on one clock; writes after TIME replicate as effects).
-- NOW_US is that moment in µs, NOW the same moment in whole ms (floored). Epoch µs stay below
-- 2^53, so both are exact integers in Lua's doubles, and Lua writes numbers below 1e14 (a
-- window number joined to a key with "..") as exact integers.
local NOW_US = tonumber(ARGV[1])
if NOW_US < 0 then
  local time = redis.call('TIME')
  NOW_US = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local NOW = math.floor(NOW_US / 1000)
