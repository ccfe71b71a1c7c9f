-- Claim sends due for a status poll (no final delivery state yet), under a lease like the outbox.
-- K.poll the partition's poll schedule (and its other keys, lib.lua).  A.lease_ms, A.limit (most entries)
-- Returns {claimed, more}: claimed a list of {verification id, send number, message sid, sent at
-- ms}; more 1 when a whole batch was looked at (entries removed as settled count), else 0.
local lease, limit = A.lease_ms, A.limit
local claimed = {}
local due = redis.call('ZRANGEBYSCORE', K.poll, '-inf', NOW, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  local vid, n = string.match(member, '^(VE%x+):(%d+)$')
  local attempt = read_attempt(vid, n)
  -- A final send is still polled for its price while its budget note waits (delivery.lua).
  local unpriced = attempt and redis.call('HEXISTS', vkey(vid), 'bu:' .. n) == 1
  if not attempt or not attempt.message_sid or (FINAL[attempt.status] and not unpriced) then
    redis.call('ZREM', K.poll, member)
  else
    redis.call('ZADD', K.poll, NOW + lease, member)
    claimed[#claimed + 1] = {vid, n, attempt.message_sid, tostring(attempt.sent_at or attempt.at)}
  end
end
return {claimed, #due >= limit and 1 or 0}
