-- Every change to one session record, atomically: KEYS[1] is the record (a hash), ARGV[1] the
-- operation. The record holds the digest of the session's secret ('tok'), its version, times
-- in server milliseconds ('created', 'seen', and 'abs', the absolute deadline, 0 for none), the
-- user (JSON, '' for none), user agent and IP, and each data key as 'd:<key>' = JSON.
--
-- Tokens are compared here as SHA-256 digests of the secret: a timing difference on a digest
-- tells an attacker nothing about a secret that would match it.
-- redkit puts the clock head (redkit/core/lua/clock.lua) in front of this file: ARGV[1] is the
-- clock, and NOW_US, NOW the time in µs and ms. Microseconds order a user's sessions: two
-- logins within one millisecond stay in order.
-- ARGV[2] is the operation, ARGV[3...] its arguments (listed with each operation below).
local key = KEYS[1]
local op = ARGV[2]

-- The record's absolute deadline when ARGV[3] is its token and it is still live, else nil.
local function live()
  local rec = redis.call('HMGET', key, 'tok', 'abs')
  if rec[1] ~= ARGV[3] then return nil end
  local deadline = tonumber(rec[2]) or 0
  if deadline > 0 and NOW >= deadline then
    redis.call('DEL', key)  -- past its absolute lifetime: gone, whatever its idle time says
    return nil
  end
  return deadline
end

-- Sliding idle expiry, never past the absolute deadline.
local function touch(idle, deadline)
  redis.call('HSET', key, 'seen', NOW)
  local ttl = idle
  if deadline > 0 and deadline - NOW < ttl then ttl = deadline - NOW end
  redis.call('PEXPIRE', key, ttl)
end

if op == 'create' then
  -- ARGV: token, idle ms, lifetime ms (0: none), user, user agent, ip, then key/value pairs.
  if redis.call('EXISTS', key) == 1 then return 0 end
  local life = tonumber(ARGV[5])
  local deadline = 0
  if life > 0 then deadline = NOW + life end
  redis.call('HSET', key, 'tok', ARGV[3], 'ver', 1, 'created', NOW, 'abs', deadline,
             'user', ARGV[6], 'ua', ARGV[7], 'ip', ARGV[8])
  for i = 9, #ARGV, 2 do redis.call('HSET', key, 'd:' .. ARGV[i], ARGV[i + 1]) end
  touch(tonumber(ARGV[4]), deadline)
  return NOW_US
end

if op == 'read' then
  -- ARGV: token, idle ms, 1 to touch. Returns {now, ms to expiry, field, value, ...}.
  local deadline = live()
  if not deadline then return 0 end
  if ARGV[5] == '1' then touch(tonumber(ARGV[4]), deadline) end
  return {NOW, redis.call('PTTL', key), unpack(redis.call('HGETALL', key))}
end

if op == 'save' then
  -- ARGV: token, idle ms, then triples: key, its JSON as read ('' when absent), its JSON now
  -- ('' to delete). A key that another request changed since is a conflict, even when it now
  -- holds this very value (two increments from 5 both write 6), and then nothing is written.
  -- Returns {1, version}, or {-1, keys...}.
  local deadline = live()
  if not deadline then return 0 end
  local conflicts = {}
  for i = 5, #ARGV, 3 do
    local current = redis.call('HGET', key, 'd:' .. ARGV[i]) or ''
    if current ~= ARGV[i + 1] then
      conflicts[#conflicts + 1] = ARGV[i]
    end
  end
  if #conflicts > 0 then return {-1, unpack(conflicts)} end
  for i = 5, #ARGV, 3 do
    if ARGV[i + 2] == '' then
      redis.call('HDEL', key, 'd:' .. ARGV[i])
    else
      redis.call('HSET', key, 'd:' .. ARGV[i], ARGV[i + 2])
    end
  end
  touch(tonumber(ARGV[4]), deadline)
  return {1, redis.call('HINCRBY', key, 'ver', 1)}
end

if op == 'touch' then
  -- ARGV: token, idle ms.
  local deadline = live()
  if not deadline then return 0 end
  touch(tonumber(ARGV[4]), deadline)
  return 1
end

if op == 'rotate' then
  -- ARGV: token, idle ms, the new token, 1 to set the user, the user.
  -- Returns {1, the user before, now in microseconds}.
  local deadline = live()
  if not deadline then return 0 end
  local user = redis.call('HGET', key, 'user') or ''
  redis.call('HSET', key, 'tok', ARGV[5])
  if ARGV[6] == '1' then redis.call('HSET', key, 'user', ARGV[7]) end
  touch(tonumber(ARGV[4]), deadline)
  return {1, user, NOW_US}
end

if op == 'delete' then
  -- ARGV: token. Returns {1, user}.
  if not live() then return 0 end
  local user = redis.call('HGET', key, 'user') or ''
  redis.call('DEL', key)
  return {1, user}
end

if op == 'info' or op == 'revoke' then
  -- ARGV: user. Only a session of that user is described or revoked: a handle from another
  -- user's listing does nothing.
  local rec = redis.call('HMGET', key, 'user', 'abs', 'created', 'seen', 'ua', 'ip')
  if rec[1] ~= ARGV[3] then return 0 end
  local deadline = tonumber(rec[2]) or 0
  if deadline > 0 and NOW >= deadline then
    redis.call('DEL', key)
    return 0
  end
  if op == 'revoke' then return redis.call('DEL', key) end
  return {NOW, redis.call('PTTL', key), rec[2], rec[3], rec[4], rec[5], rec[6]}
end

return redis.error_reply('unknown session operation ' .. tostring(op))
