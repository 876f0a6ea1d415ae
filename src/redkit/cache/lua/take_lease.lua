-- Take the load lease of an entry, unless another loader holds it.
-- KEYS[1]  the lease   ARGV[1] our token   ARGV[2] PX in ms   ARGV[3] the "written" marker
-- A write leaves the marker to fence the loads that began before it (store_if_leased.lua);
-- a load that begins after the write may take the lease over at once.
-- Returns 1 when the lease is ours, else 0.
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
