-- The 1-round-trip decision one would write by hand: INCRBY, and PEXPIRE on the first hit.
-- KEYS[1] the counter; ARGV[1] the cost; ARGV[2] the window in ms. Returns the count.
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
