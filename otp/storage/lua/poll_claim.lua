-- Claim sends due for a status poll (no final delivery state yet), under a lease like the outbox.
-- KEYS[1] the partition's poll schedule.  ARGV[5] lease ms  [6] max entries
-- Returns a list of {verification id, send number, message sid, sent at ms}.
local lease, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local claimed = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', NOW, 'LIMIT', 0, limit)) do
  local vid, n = string.match(member, '^(VE%x+):(%d+)$')
  local attempt = read_attempt(vid, n)
  if not attempt or not attempt.message_sid or FINAL[attempt.status] then
    redis.call('ZREM', KEYS[1], member)
  else
    redis.call('ZADD', KEYS[1], NOW + lease, member)
    claimed[#claimed + 1] = {vid, n, attempt.message_sid, tostring(attempt.sent_at or attempt.at)}
  end
end
return claimed
