-- Store a loaded value, unless the key was written since the load began.
-- KEYS[1]  the entry   KEYS[2] its load lease (same slot)
-- ARGV[1]  the loader's lease token   ARGV[2] the entry's bytes   ARGV[3] PX in ms (0: none)
-- A write (set, delete, write-through) replaces the lease with a marker: a load that began
-- before it read older data and must not cover the newer value. A lease that simply ran out
-- (a slow load, and no write) leaves nothing, and the value is stored.
-- Returns 1 when stored, 0 when a write came first.
local lease = redis.call('GET', KEYS[2])
if lease and lease ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
