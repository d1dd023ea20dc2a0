-- Take the lease if nobody holds it and start a new term.
-- KEYS[1]: lease key, KEYS[2]: fence key. ARGV[1]: value, ARGV[2]: ttl in ms.
-- Returns the new fencing token, or 0 when the lease is held by somebody else.
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
    return redis.call("INCR", KEYS[2])
end
return 0
