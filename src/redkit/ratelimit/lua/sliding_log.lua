-- Sliding log: a sorted set "<base>:log" with one member per admitted unit of cost, scored
-- with its admission time (epoch ms). An entry is in the window while its score > now - window.
-- KEYS[1]  "<base>:log"
-- ARGV[1]  the clock (µs, or -1 for TIME)    ARGV[2] rate: cost, negative refunds, 0 peeks
-- ARGV[3]  the limit (tokens)                ARGV[4] the window in ms
-- Returns {allowed, limit, remaining, reset, retry_ms, now}; retry_ms -1 means "never".
-- Members are "<ms>:<k>", k numbering the entries of one ms from 0, its decimal digits led by
-- a letter giving their count ("a7", "b12"): within one score the member order, which is the
-- order ZPOPMAX takes them in, is the order of k, so refunds remove the highest k first and
-- the entries of each ms stay numbered 0..c-1: the next one is always ZCOUNT(ms, ms).
-- Peeks and refusals write nothing; admissions and refunds first trim what left the window,
-- so the set never holds more than the limit.
local rate = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local key = KEYS[1]
local horizon = NOW - window -- an entry scored at or before it has left the window
local inside = '(' .. horizon
-- Scores are epoch ms, below 1e14: ".." writes them as exact integers.

-- The i-th oldest entry in the window (i from 0) as its score, or nil.
local function score_at(i)
  local entry = redis.call('ZRANGEBYSCORE', key, inside, '+inf', 'WITHSCORES', 'LIMIT', i, 1)
  if #entry == 0 then
    return nil
  end
  return tonumber(entry[2])
end

-- reset: when the oldest entry leaves the window; now + window for an empty log.
local function reset_at()
  local oldest = score_at(0)
  if oldest == nil then
    return NOW + window
  end
  return oldest + window
end

-- The key lives until its newest entry leaves the window.
local function expire()
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #newest > 0 then
    redis.call('PEXPIRE', key, tonumber(newest[2]) + window - NOW)
  end
end

if rate > 0 then
  local used = redis.call('ZCOUNT', key, inside, '+inf')
  if used + rate > limit then
    -- Refused before anything is written.
    local retry = -1
    if rate <= limit then
      -- It fits once the (used + rate - limit)-th oldest entry has left the window.
      retry = score_at(used + rate - limit - 1) + window - NOW
    end
    return {0, limit, math.max(0, limit - used), reset_at(), retry, NOW}
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', horizon)
  local k = redis.call('ZCOUNT', key, NOW, NOW)
  local args = {}
  for i = k, k + rate - 1 do
    local digits = string.format('%d', i)
    args[#args + 1] = NOW
    args[#args + 1] = NOW .. ':' .. string.char(96 + #digits) .. digits
    if #args >= 1000 or i == k + rate - 1 then
      redis.call('ZADD', key, unpack(args))
      args = {}
    end
  end
  expire()
  return {1, limit, limit - used - rate, reset_at(), 0, NOW}
end

local used
if rate < 0 then
  -- A refund removes the newest entries, at most as many as the window holds.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', horizon)
  local held = redis.call('ZCARD', key)
  local back = math.min(-rate, held)
  if back > 0 then
    redis.call('ZPOPMAX', key, back)
    expire()
  end
  used = held - back
else
  used = redis.call('ZCOUNT', key, inside, '+inf')
end
return {1, limit, math.max(0, limit - used), reset_at(), 0, NOW}
