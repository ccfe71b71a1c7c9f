-- Dashboard sign-in throttle: at most ARGV[3] failed sign-ins per client address in the last
-- ARGV[2] ms. Called once the attempt's outcome is known, so the decision and the count are one
-- step: an address at its limit is refused whatever the outcome (even the right key), a refusal
-- counts nothing, a failure is logged only when allowed, a success is neither counted nor refunds.
-- K.log the failure log (sorted set scored by time).  ARGV[4] "1" if the attempt failed,
-- ARGV[5] a unique member.  Returns {allowed (1|0), retry after ms}.
local window, limit, failed, member = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5]
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
