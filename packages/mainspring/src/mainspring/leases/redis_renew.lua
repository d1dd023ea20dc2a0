-- Extend the lease only if it still carries our value.
-- KEYS[1]: lease key. ARGV[1]: our value, ARGV[2]: ttl in ms. Returns 1 if renewed, else 0.
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
