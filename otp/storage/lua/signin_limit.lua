-- Dashboard sign-in throttle: at most ARGV[6] failed sign-ins per client address in the last
-- ARGV[5] ms. Called once the attempt's outcome is known, so the decision and the count are one
-- step: an address at its limit is refused whatever the outcome (even the right key), a refusal
-- counts nothing, a failure is logged only when allowed, a success is neither counted nor refunds.
-- KEYS[1] the failure log (sorted set scored by time).  ARGV[7] "1" if the attempt failed,
-- ARGV[8] a unique member.  Returns {allowed (1|0), retry after ms}.
local window, limit, failed, member = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1', ARGV[8]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', NOW - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  -- Allowed again once enough of the oldest failures have left the window.
  local freeing = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  return {0, math.max(1, tonumber(freeing[2]) + window - NOW)}
end
if failed then
  redis.call('ZADD', KEYS[1], NOW, member)
  redis.call('PEXPIRE', KEYS[1], window)
end
return {1, 0}
