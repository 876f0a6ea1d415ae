-- Shared head of every rate-limit script (redkit prepends it): where "now" comes from.
-- ARGV[1] is the caller's clock in epoch milliseconds, or -1 to read the server's own TIME,
-- so that every app server agrees on one clock (writes after TIME replicate as effects).
-- Window numbers are joined to keys with "..": Lua writes numbers below 1e14 as exact integers.
local NOW = tonumber(ARGV[1])
if NOW < 0 then
  local time = redis.call('TIME')
  NOW = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
