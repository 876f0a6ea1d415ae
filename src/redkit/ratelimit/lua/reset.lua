-- Delete one identifier's state: exactly its keys, never a scan of the keyspace.
-- KEYS     keys to delete; ARGV[1] the clock
-- ARGV[i + 1]  for KEYS[i]: 0 to delete just that key, or a window in ms to delete it and its
--          window counters next to now: the current one, the one before (a sliding window
--          reads it) and the one after (app servers whose clocks run ahead).
-- Returns the number of keys deleted.
local deleted = 0
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[i + 1])
  if window == 0 then
    deleted = deleted + redis.call('DEL', key)
  else
    local bucket = math.floor(NOW / window)
    deleted = deleted + redis.call('DEL', key, key .. ':' .. (bucket - 1), key .. ':' .. bucket,
      key .. ':' .. (bucket + 1))
  end
end
return deleted
