-- Multi-region decision, in @upstash/ratelimit's multi-region layout: one hash per window at
-- "<prefix>:<identifier>:<window number>", one field per request: request id -> its cost.
-- KEYS[1]  the current window's hash     KEYS[2] (sliding window only) the previous one's
-- ARGV[1]  this request's id             ARGV[2] rate: cost, negative refunds, 0 peeks
-- ARGV[3]  the limit                     ARGV[4] the hash's TTL in ms on its first write
-- ARGV[5]  the previous window's weight (0 for a fixed window)
-- Returns {current fields, the previous window's total, admitted}; the current fields include
-- this request's own when it was written, so the caller can spread it to the other regions
-- (the previous window's ids are never needed: only its total weighs in).
local request_id = ARGV[1]
local rate = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local ttl = ARGV[4]
local weight = tonumber(ARGV[5])

local function total(fields)
  local sum = 0
  for i = 2, #fields, 2 do
    sum = sum + tonumber(fields[i])
  end
  return sum
end

local current = redis.call('HGETALL', KEYS[1])
local previous = 0
if KEYS[2] then
  previous = total(redis.call('HGETALL', KEYS[2]))
end
-- Not floored, and with the cost included, as the JS SDK's multi-region check.
if rate > 0 and previous * weight + total(current) + rate > limit then
  return {current, previous, 0} -- refused: nothing is written, so nothing is consumed
end
if rate ~= 0 then
  redis.call('HSET', KEYS[1], request_id, ARGV[2])
  if #current == 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  current[#current + 1] = request_id
  current[#current + 1] = ARGV[2]
end
return {current, previous, 1}
