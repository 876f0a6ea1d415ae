-- Every change to one session record, atomically: KEYS[1] is the record (a hash), ARGV[1] the
-- operation. The record holds the digest of the session's secret ('tok'), its version, times
-- in server milliseconds ('created', 'seen', and 'abs', the absolute deadline, 0 for none), the
-- user (JSON, '' for none), user agent and IP, and each data key as 'd:<key>' = JSON.
--
-- Tokens are compared here as SHA-256 digests of the secret: a timing difference on a digest
-- tells an attacker nothing about a secret that would match it.
-- ARGV[1] is "<op>", or "<op>@<epoch microseconds>" from a caller whose server asks scripts
-- not to read the clock (Upstash): then that time is used instead of the server's TIME.
local key = KEYS[1]
local op, given = string.match(ARGV[1], '^(%a+)@?(%d*)$')
-- Microseconds order a user's sessions: two logins within one millisecond stay in order.
local now_us
if given ~= nil and given ~= '' then
  now_us = tonumber(given)
else
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local now = math.floor(now_us / 1000)

-- The record's absolute deadline when ARGV[2] is its token and it is still live, else nil.
local function live()
  local rec = redis.call('HMGET', key, 'tok', 'abs')
  if rec[1] ~= ARGV[2] then return nil end
  local deadline = tonumber(rec[2]) or 0
  if deadline > 0 and now >= deadline then
    redis.call('DEL', key)  -- past its absolute lifetime: gone, whatever its idle time says
    return nil
  end
  return deadline
end

-- Sliding idle expiry, never past the absolute deadline.
local function touch(idle, deadline)
  redis.call('HSET', key, 'seen', now)
  local ttl = idle
  if deadline > 0 and deadline - now < ttl then ttl = deadline - now end
  redis.call('PEXPIRE', key, ttl)
end

if op == 'create' then
  -- ARGV: token, idle ms, lifetime ms (0: none), user, user agent, ip, then key/value pairs.
  if redis.call('EXISTS', key) == 1 then return 0 end
  local life = tonumber(ARGV[4])
  local deadline = 0
  if life > 0 then deadline = now + life end
  redis.call('HSET', key, 'tok', ARGV[2], 'ver', 1, 'created', now, 'abs', deadline,
             'user', ARGV[5], 'ua', ARGV[6], 'ip', ARGV[7])
  for i = 8, #ARGV, 2 do redis.call('HSET', key, 'd:' .. ARGV[i], ARGV[i + 1]) end
  touch(tonumber(ARGV[3]), deadline)
  return now_us
end

if op == 'read' then
  -- ARGV: token, idle ms, 1 to touch. Returns {now, ms to expiry, field, value, ...}.
  local deadline = live()
  if not deadline then return 0 end
  if ARGV[4] == '1' then touch(tonumber(ARGV[3]), deadline) end
  return {now, redis.call('PTTL', key), unpack(redis.call('HGETALL', key))}
end

if op == 'save' then
  -- ARGV: token, idle ms, then triples: key, its JSON as read ('' when absent), its JSON now
  -- ('' to delete). A key that another request changed since is a conflict, even when it now
  -- holds this very value (two increments from 5 both write 6), and then nothing is written.
  -- Returns {1, version}, or {-1, keys...}.
  local deadline = live()
  if not deadline then return 0 end
  local conflicts = {}
  for i = 4, #ARGV, 3 do
    local current = redis.call('HGET', key, 'd:' .. ARGV[i]) or ''
    if current ~= ARGV[i + 1] then
      conflicts[#conflicts + 1] = ARGV[i]
    end
  end
  if #conflicts > 0 then return {-1, unpack(conflicts)} end
  for i = 4, #ARGV, 3 do
    if ARGV[i + 2] == '' then
      redis.call('HDEL', key, 'd:' .. ARGV[i])
    else
      redis.call('HSET', key, 'd:' .. ARGV[i], ARGV[i + 2])
    end
  end
  touch(tonumber(ARGV[3]), deadline)
  return {1, redis.call('HINCRBY', key, 'ver', 1)}
end

if op == 'touch' then
  -- ARGV: token, idle ms.
  local deadline = live()
  if not deadline then return 0 end
  touch(tonumber(ARGV[3]), deadline)
  return 1
end

if op == 'rotate' then
  -- ARGV: token, idle ms, the new token, 1 to set the user, the user.
  -- Returns {1, the user before, now in microseconds}.
  local deadline = live()
  if not deadline then return 0 end
  local user = redis.call('HGET', key, 'user') or ''
  redis.call('HSET', key, 'tok', ARGV[4])
  if ARGV[5] == '1' then redis.call('HSET', key, 'user', ARGV[6]) end
  touch(tonumber(ARGV[3]), deadline)
  return {1, user, now_us}
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
  if rec[1] ~= ARGV[2] then return 0 end
  local deadline = tonumber(rec[2]) or 0
  if deadline > 0 and now >= deadline then
    redis.call('DEL', key)
    return 0
  end
  if op == 'revoke' then return redis.call('DEL', key) end
  return {now, redis.call('PTTL', key), rec[2], rec[3], rec[4], rec[5], rec[6]}
end

return redis.error_reply('unknown session operation ' .. tostring(op))
