-- Token bucket with discrete refills, in @upstash/ratelimit's layout: a hash at the
-- identifier's base key with the fields "refilledAt" (epoch ms) and "tokens".
-- KEYS[1]  the bucket
-- ARGV[1]  the clock  ARGV[2] rate  ARGV[3] max tokens  ARGV[4] tokens per refill
-- ARGV[5]  the refill interval in ms
-- Returns {allowed, limit, remaining, reset, retry_ms, now}; retry_ms -1 means "never".
local rate = tonumber(ARGV[2])
local max_tokens = tonumber(ARGV[3])
local refill = tonumber(ARGV[4])
local interval = tonumber(ARGV[5])

local state = redis.call('HMGET', KEYS[1], 'refilledAt', 'tokens')
local refilled_at = tonumber(state[1])
local tokens = tonumber(state[2])
if refilled_at == nil or tokens == nil then
  refilled_at = NOW
  tokens = max_tokens
elseif NOW >= refilled_at + interval then
  local refills = math.floor((NOW - refilled_at) / interval)
  tokens = tokens + refills * refill
  refilled_at = refilled_at + refills * interval
end
if tokens >= max_tokens then
  -- A full bucket is a new bucket: its refill phase starts now, whether or not its key has
  -- expired yet, so key expiry never changes an answer.
  tokens = max_tokens
  refilled_at = NOW
end
local reset = refilled_at + interval

if rate > 0 and tokens < rate then
  -- Refused before anything is written: a bucket never goes negative.
  local retry = -1
  if rate <= max_tokens then
    retry = refilled_at + math.ceil((rate - tokens) / refill) * interval - NOW
  end
  return {0, max_tokens, tokens, reset, retry, NOW}
end

if rate ~= 0 then
  tokens = math.min(max_tokens, tokens - rate)
  if tokens >= max_tokens then
    redis.call('DEL', KEYS[1]) -- refunded to full: the same as a new bucket
  else
    redis.call('HSET', KEYS[1], 'refilledAt', refilled_at, 'tokens', tokens)
    -- Expire when the bucket would be full again: from then on it is a new bucket anyway.
    local full_at = refilled_at + math.ceil((max_tokens - tokens) / refill) * interval
    redis.call('PEXPIRE', KEYS[1], full_at - NOW)
  end
end
return {1, max_tokens, tokens, reset, 0, NOW}
