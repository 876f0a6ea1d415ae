-- Concurrency limiter: how many leases of an identifier are held now (read only).
-- KEYS[1]  the identifier's sorted set   ARGV[1] the clock
return redis.call('ZCOUNT', KEYS[1], '(' .. NOW, '+inf')
