-- After the last allowed wrong answer: lock the verification for good.
-- KEYS[1] the verification.  ARGV[5] id  [6] retention ms
local id, retention = ARGV[5], tonumber(ARGV[6])
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local a, ma = unpack(redis.call('HMGET', KEYS[1], 'a', 'ma'))
if settle(id, retention) == 'pending' and tonumber(a) >= tonumber(ma) then
  finish(id, 'max_attempts_reached', retention)
  audit('max_attempts', {vid = id})
end
return redis.call('HGETALL', KEYS[1])
