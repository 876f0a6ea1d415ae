-- Shared head of every rate-limit script (redkit prepends it): where "now" comes from.
-- ARGV[1] is the caller's clock in epoch milliseconds, or -1 to read the server's own TIME,
-- so that every app server agrees on one clock (writes after TIME replicate as effects).
-- NOW is in whole ms; NOW_US is the same moment in µs (the server's TIME to the µs, or the
-- caller's ms times 1000). Epoch µs stay below 2^53, so both are exact integers in doubles.
-- Window numbers are joined to keys with "..": Lua writes numbers below 1e14 as exact integers.
local NOW = tonumber(ARGV[1])
local NOW_US = NOW * 1000
if NOW < 0 then
  local time = redis.call('TIME')
  NOW_US = tonumber(time[1]) * 1000000 + tonumber(time[2])
  NOW = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
