-- A tag's current token, created on first use: entries are stamped with it when written.
-- KEYS[1]  the tag's key   ARGV[1] a fresh random token, used when the tag has none yet
-- Returns the token. Tag keys never expire: one that did would hand out a new token, which is
-- safe (older entries turn stale) but would invalidate them for no reason.
local token = redis.call('GET', KEYS[1])
if not token then
  redis.call('SET', KEYS[1], ARGV[1])
  token = ARGV[1]
end
return token
