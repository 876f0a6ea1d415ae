-- Delete one identifier's state: exactly its keys, never a scan of the keyspace.
-- KEYS[1]  the identifier's base key (a token bucket lives there); KEYS[2..] (optional) the
--          window counters, when the caller named them
-- ARGV[1]  now (ms, or -1)   ARGV[2] the window in ms, 0 when there are no window counters
-- Without named counters, the windows next to now are removed: the current one, the one
-- before (a sliding window reads it) and the one after (app servers whose clocks run ahead).
-- Returns the number of keys deleted.
if #KEYS > 1 then
  return redis.call('DEL', unpack(KEYS))
end
local window = tonumber(ARGV[2])
if window == 0 then
  return redis.call('DEL', KEYS[1])
end
local bucket = math.floor(NOW / window)
return redis.call('DEL', KEYS[1], KEYS[1] .. ':' .. (bucket - 1),
  KEYS[1] .. ':' .. bucket, KEYS[1] .. ':' .. (bucket + 1))
