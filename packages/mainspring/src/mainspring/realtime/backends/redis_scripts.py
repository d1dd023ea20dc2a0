"""The Lua the Redis backend runs: each call is atomic, so ids, history and delivery agree.

Every script takes a channel's keys as KEYS[1] epoch, KEYS[2] offset, KEYS[3] stream and a
fresh epoch token as ARGV[1], used when the channel has none (never published, or Redis lost
it): then the offset restarts at 0 and the stream is emptied, so an old id can never match.
"""

_ENSURE_EPOCH = r"""
local epoch = redis.call('GET', KEYS[1])
if not epoch or redis.call('EXISTS', KEYS[2]) == 0 then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], 0)
  redis.call('DEL', KEYS[3])
end
"""

HEAD = (
    _ENSURE_EPOCH
    + r"""
return {epoch, redis.call('GET', KEYS[2])}
"""
)
"""The channel's epoch and last offset: where a new subscription starts."""

PUBLISH = (
    _ENSURE_EPOCH
    + r"""
-- ARGV[2] history to keep, ARGV[3] key as JSON, ARGV[4] data, ARGV[5] pubsub channel
local offset = string.format('%d', redis.call('INCR', KEYS[2]))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], offset .. '-0', 'k', ARGV[3], 'd', ARGV[4])
local id = epoch .. ':' .. offset
redis.call('PUBLISH', ARGV[5], '["' .. id .. '",' .. ARGV[3] .. ']\n' .. ARGV[4])
return id
"""
)
"""Number the message, keep it in the stream, and publish ``["<id>",<key>]\\n<data>``."""
