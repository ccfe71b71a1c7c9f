-- A sliding-log limit: at most A.limit events in the last A.window_ms, decided and counted at once.
-- K.log the event log (sorted set scored by time).  A.member a unique member for this event.
-- Returns {allowed (1|0), count including this one if allowed, retry after ms}.
local window, limit, member = tonumber(A.window_ms), tonumber(A.limit), A.member
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
