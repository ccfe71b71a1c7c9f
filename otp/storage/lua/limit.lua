-- A sliding-log limit: at most ARGV[6] events in the last ARGV[5] ms, decided and counted at once.
-- KEYS[1] the event log (sorted set scored by time).  ARGV[5] window ms  [6] limit  [7] unique member
-- Returns {allowed (1|0), count including this one if allowed, retry after ms}.
local window, limit, member = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', NOW - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  -- The request fits again once enough of the oldest events have left the window.
  local freeing = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  return {0, count, math.max(1, tonumber(freeing[2]) + window - NOW)}
end
redis.call('ZADD', KEYS[1], NOW, member)
redis.call('PEXPIRE', KEYS[1], window)
return {1, count + 1, 0}
