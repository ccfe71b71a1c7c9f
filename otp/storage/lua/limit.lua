-- A sliding-log limit: at most ARGV[3] events in the last ARGV[2] ms, decided and counted at once.
-- K.log the event log (sorted set scored by time).  ARGV[2] window ms  [3] limit  [4] unique member
-- Returns {allowed (1|0), count including this one if allowed, retry after ms}.
local window, limit, member = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', K.log, '-inf', NOW - window)
local count = redis.call('ZCARD', K.log)
if count >= limit then
  -- The request fits again once enough of the oldest events have left the window.
  local freeing = redis.call('ZRANGE', K.log, count - limit, count - limit, 'WITHSCORES')
  return {0, count, math.max(1, tonumber(freeing[2]) + window - NOW)}
end
redis.call('ZADD', K.log, NOW, member)
redis.call('PEXPIRE', K.log, window)
return {1, count + 1, 0}
