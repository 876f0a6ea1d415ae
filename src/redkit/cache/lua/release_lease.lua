-- Give up a load lease, if it is still ours (it may have expired and gone to another loader).
-- KEYS[1]  the lease   ARGV[1] our token
-- Returns 1 when the lease was ours and is released, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
