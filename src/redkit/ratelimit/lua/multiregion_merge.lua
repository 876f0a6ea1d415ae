-- Multi-region catch-up: add the requests another region admitted and this one lacks.
-- KEYS[1]  a window's hash               ARGV[1] its TTL in ms, when it has none yet
-- ARGV[2..] request id, cost, request id, cost, ...
-- Idempotent: a request id carries the same cost in every region. Returns the fields added.
local ttl = ARGV[1]
local added = 0
for i = 2, #ARGV, 2 do
  added = added + redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ttl) -- a region that was down holds no hash yet
end
return added
