-- GCRA (the generic cell rate algorithm) on a microsecond clock: one string key holding the
-- theoretical arrival time (TAT), the moment (epoch µs) at which nothing is pending any more
-- (the bucket is full again).
-- KEYS[1]  "<base>:gcra"
-- ARGV[1]  the clock (µs, or -1 for TIME)    ARGV[2] rate: cost n, negative refunds, 0 peeks
-- ARGV[3]  the burst B                        ARGV[4] the emission interval T in µs
-- A request of n cells is admitted iff max(TAT, now) + n*T - now <= B*T.
-- Returns {allowed, limit, remaining, reset, retry_ms, now, retry_us}; retry -1 means "never".
-- Every number stays an integer below 2^53: exact in Lua's doubles (B*T is at most 10 years).
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
local capacity = burst * interval -- how far the TAT may run ahead of now

-- floor(a / b) for integers (b > 0), exact even where a / b rounds to the next integer.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function remaining(t)
  return math.max(0, idiv(capacity - (t - NOW_US), interval))
end

-- reset: the first whole ms at which the bucket is full again (the TAT, rounded up).
local function reset_ms(t)
  return -idiv(-t, 1000)
end

local function store(t)
  -- A TAT of 16 digits: %d keeps every one (tostring would round it to 14).
  redis.call('SET', KEYS[1], string.format('%d', t), 'PX', -idiv(NOW_US - t, 1000))
end

local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') or 0, NOW_US)

if rate > 0 then
  if rate > burst then
    -- More cells than the burst can never conform.
    return {0, burst, remaining(tat), reset_ms(tat), -1, NOW, -1}
  end
  local new_tat = tat + rate * interval
  if new_tat - NOW_US > capacity then
    -- Refused before anything is written. It conforms once now reaches new_tat - B*T.
    local retry_us = new_tat - capacity - NOW_US
    return {0, burst, remaining(tat), reset_ms(tat), -idiv(-retry_us, 1000), NOW, retry_us}
  end
  tat = new_tat
  store(tat)
elseif rate < 0 then
  -- A refund moves the TAT back by its cells, but never before now (a bucket is never more
  -- than full). At most B cells matter: B*T covers everything the TAT can be ahead.
  local new_tat = math.max(NOW_US, tat - math.min(-rate, burst) * interval)
  if new_tat < tat then
    if new_tat <= NOW_US then
      redis.call('DEL', KEYS[1]) -- refunded to full: the same as no key
    else
      store(new_tat)
    end
  end
  tat = new_tat
end
return {1, burst, remaining(tat), reset_ms(tat), 0, NOW, 0}
