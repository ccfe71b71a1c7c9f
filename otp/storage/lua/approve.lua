-- Compare-and-set pending -> approved: of many concurrent right answers exactly one wins.
-- K.verification the verification, and the partition's keys (lib.lua).  A.id, A.retention_ms,
-- A.attempt (the attempt that matched), A.matched (the field of the code that matched, '' out of
-- band), A.replay_ms: how long that code may repeat the
-- approval (ms): a client that lost the answer to a right check gets the same approval again,
-- instead of a 409 for the approval it made
-- Returns {won (1|0), flat verification hash}.
local id, retention, attempt = A.id, A.retention_ms, A.attempt
local matched, replay_ms = A.matched, A.replay_ms
-- A right answer is not a failed check of the number.
local to, owner = unpack(redis.call('HMGET', K.verification, 'to', 'key'))
redis.call('ZREM', failedkey(owner or '', to or ''), id .. ':' .. attempt)
if redis.call('EXISTS', K.verification) == 0 then return {0, {}} end
if settle(id, retention) ~= 'pending' then return {0, record_of(K.verification, id)} end
if matched ~= '' and replay_ms > 0 then
  local hash = redis.call('HGET', K.verification, matched)
  if hash then
    redis.call('HSET', approvingkey(id), 'h', hash, 'n', 0)
    redis.call('PEXPIRE', approvingkey(id), replay_ms)
  end
end
finish(id, 'approved', retention, {'aa', NOW})
audit('approved', {vid = id})
return {1, record_of(K.verification, id)}
