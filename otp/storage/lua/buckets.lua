-- The Buckets of one Verify v2 service Rate Limit, for one value: at most Max sends per Interval.
-- Every bucket counts the same sends, so one sliding log (K.log, a sorted set scored by time)
-- serves them all: a bucket counts the log's sends of its last Interval. Every bucket decides
-- before any counts, and the send is counted once for all of them or not at all, so a bucket
-- that refuses never leaves a count in the others.
-- A.windows {{max, interval ms}, ...}; A.member a unique member for this send.
-- Returns {allowed (1|0), count, retry after ms, max}: the refusing bucket's count (with the
-- longest wait) when refused, else the first bucket's count including this send.
local longest = 0
for _, w in ipairs(A.windows) do
  longest = math.max(longest, tonumber(w[2]))
end
redis.call('ZREMRANGEBYSCORE', K.log, '-inf', NOW - longest)
local allowed, count, retry, most = 1, 0, 0, 0
for i, w in ipairs(A.windows) do
  local cap, window = tonumber(w[1]), tonumber(w[2])
  local since = '(' .. (NOW - window)
  local n = redis.call('ZCOUNT', K.log, since, '+inf')
  if n >= cap then
    -- It fits again once enough of the bucket's oldest sends have left its window.
    local freeing = redis.call('ZRANGEBYSCORE', K.log, since, '+inf', 'WITHSCORES', 'LIMIT', n - cap, 1)
    local wait = math.max(1, tonumber(freeing[2]) + window - NOW)
    if allowed == 1 or wait > retry then
      count, retry, most = n, wait, cap
    end
    allowed = 0
  elseif allowed == 1 and i == 1 then
    count, most = n + 1, cap
  end
end
if allowed == 0 then
  return {0, count, retry, most}
end
redis.call('ZADD', K.log, NOW, A.member)
redis.call('PEXPIRE', K.log, longest)
return {1, count, 0, most}
