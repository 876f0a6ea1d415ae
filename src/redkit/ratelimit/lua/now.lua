-- Shared head of every rate-limit script (redkit prepends it): where "now" comes from.
-- ARGV[1] is the caller's clock in epoch milliseconds, or -1 to read the server's own TIME,
-- so that every app server agrees on one clock (writes after TIME replicate as effects).
local function rk_now(arg)
  local now = tonumber(arg)
  if now >= 0 then
    return now
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An integer as Redis key text, exact up to 2^53 (tostring would switch to exponents).
local function rk_int(n)
  return string.format('%.0f', n)
end

local NOW = rk_now(ARGV[1])
