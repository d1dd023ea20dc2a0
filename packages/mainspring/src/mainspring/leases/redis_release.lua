-- Delete the lease only if it still carries our value.
-- KEYS[1]: lease key. ARGV[1]: our value. Returns 1 if deleted, else 0.
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
