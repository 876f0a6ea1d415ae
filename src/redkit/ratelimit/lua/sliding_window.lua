-- Sliding window (two fixed windows, the previous one weighted by how much of it still lies
-- inside the sliding window), in @upstash/ratelimit's layout and arithmetic.
-- KEYS[1]  the identifier's base key; KEYS[2], KEYS[3] (optional) the current and previous
--          counters, when the caller named them
-- ARGV[1]  the clock  ARGV[2] rate  ARGV[3] limit  ARGV[4] window in ms
-- Returns {allowed, limit, remaining, reset, retry_ms, now}; retry_ms -1 means "never".
local rate = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local bucket = math.floor(NOW / window)
local cur_key = KEYS[2] or (KEYS[1] .. ':' .. bucket)
local prev_key = KEYS[3] or (KEYS[1] .. ':' .. (bucket - 1))
local reset = (bucket + 1) * window
local counts = redis.call('MGET', cur_key, prev_key)
local cur = tonumber(counts[1] or '0')
local prev = tonumber(counts[2] or '0')
local elapsed = NOW - bucket * window

-- The previous window's share at offset e into the current one (Upstash's formula, floored).
local function weighted(e, count)
  return math.floor((1 - e / window) * count)
end

-- The first offset e >= from (at most `window`) at which weighted(e, p) + c <= room.
-- weighted() only falls as e grows, so start from the closed-form guess and correct it.
local function first_fit(from, p, c, room)
  if p == 0 then
    return from
  end
  local e = math.floor(window * (1 - (room - c + 1) / p)) + 1
  if e < from then
    e = from
  end
  if e > window then
    e = window
  end
  while e > from and weighted(e - 1, p) + c <= room do
    e = e - 1
  end
  while e < window and weighted(e, p) + c > room do
    e = e + 1
  end
  return e
end

local used = weighted(elapsed, prev) + cur
if rate > 0 and used + rate > limit then
  -- Refused before anything is written: the rate is part of the check.
  local retry = -1
  local room = limit - rate
  if room >= 0 then
    local e = window
    if cur <= room then
      e = first_fit(elapsed, prev, cur, room)
    end
    if e < window then
      retry = e - elapsed
    else
      -- Not in this window: in the next one this window's count becomes the weighted one.
      retry = window - elapsed + first_fit(0, cur, 0, room)
    end
  end
  return {0, limit, math.max(0, limit - used), reset, retry, NOW}
end

if rate < 0 and cur + rate < 0 then
  rate = -cur -- a refund gives back at most what the current window has used
end
if rate ~= 0 then
  local n = redis.call('INCRBY', cur_key, rate)
  if n == rate then
    redis.call('PEXPIRE', cur_key, window * 2 + 1000)
  end
  used = used + rate
end
return {1, limit, math.max(0, limit - used), reset, 0, NOW}
