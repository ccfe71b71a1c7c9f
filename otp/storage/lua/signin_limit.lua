-- Dashboard sign-in throttle: at most A.limit failed sign-ins per client address in the last
-- A.window_ms. Called once the attempt's outcome is known, so the decision and the count are one
-- step: an address at its limit is refused whatever the outcome (even the right key), a refusal
-- counts nothing, a failure is logged only when allowed, a success is neither counted nor refunds.
-- K.log the failure log (sorted set scored by time).  A.failed whether the attempt failed,
-- A.member a unique member.  Returns {allowed (1|0), retry after ms}.
local window, limit, failed, member = tonumber(A.window_ms), tonumber(A.limit), A.failed, A.member
redis.call('ZREMRANGEBYSCORE', K.log, '-inf', NOW - window)
local count = redis.call('ZCARD', K.log)
if count >= limit then
  -- Allowed again once enough of the oldest failures have left the window.
  local freeing = redis.call('ZRANGE', K.log, count - limit, count - limit, 'WITHSCORES')
  return {0, math.max(1, tonumber(freeing[2]) + window - NOW)}
end
if failed then
  redis.call('ZADD', K.log, NOW, member)
  redis.call('PEXPIRE', K.log, window)
end
return {1, 0}
