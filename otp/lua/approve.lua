-- Compare-and-set pending -> approved: of many concurrent right answers exactly one wins.
-- KEYS[1] the verification.  ARGV[5] id  [6] retention ms  [7] the attempt that matched
-- Returns {won (1|0), flat verification hash}.
local id, retention, attempt = ARGV[5], tonumber(ARGV[6]), ARGV[7]
-- A right answer is not a failed check of the number.
redis.call('ZREM', TAG .. 'nf:' .. (redis.call('HGET', KEYS[1], 'to') or ''), id .. ':' .. attempt)
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, {}} end
if settle(id, retention) ~= 'pending' then return {0, redis.call('HGETALL', KEYS[1])} end
finish(id, 'approved', retention, {'aa', NOW})
audit('approved', {vid = id})
return {1, redis.call('HGETALL', KEYS[1])}
