-- Add to an integer entry, only if it exists: a missing key is the caller's error, never 0.
-- KEYS[1]  the entry   ARGV[1] the delta
-- Returns the new value, or false when the key does not exist. A value that is no integer
-- makes INCRBY fail, and that error reply is the caller's answer.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
