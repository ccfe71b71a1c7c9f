-- Compare-and-set pending -> approved: of many concurrent right answers exactly one wins.
-- KEYS[1] the verification.  ARGV[5] id  [6] retention ms  [7] the attempt that matched
-- [8] the field of the code that matched ('' out of band)  [9] how long that code may repeat the
-- approval (ms): a client that lost the answer to a right check gets the same approval again,
-- instead of a 409 for the approval it made
-- Returns {won (1|0), flat verification hash}.
local id, retention, attempt = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local matched, replay_ms = ARGV[8], tonumber(ARGV[9])
-- A right answer is not a failed check of the number.
local to, owner = unpack(redis.call('HMGET', KEYS[1], 'to', 'key'))
redis.call('ZREM', failedkey(owner or '', to or ''), id .. ':' .. attempt)
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, {}} end
if settle(id, retention) ~= 'pending' then return {0, redis.call('HGETALL', KEYS[1])} end
if matched ~= '' and replay_ms > 0 then
  local hash = redis.call('HGET', KEYS[1], matched)
  if hash then
    redis.call('HSET', approvingkey(id), 'h', hash, 'n', 0)
    redis.call('PEXPIRE', approvingkey(id), replay_ms)
  end
end
finish(id, 'approved', retention, {'aa', NOW})
audit('approved', {vid = id})
return {1, redis.call('HGETALL', KEYS[1])}
