-- After the last allowed wrong answer: lock the verification for good.
-- K.verification the verification, and the partition's keys.  A.id, A.retention_ms
local id, retention = A.id, A.retention_ms
if redis.call('EXISTS', K.verification) == 0 then return {} end
local a, ma = unpack(redis.call('HMGET', K.verification, 'a', 'ma'))
if settle(id, retention) == 'pending' and tonumber(a) >= tonumber(ma) then
  finish(id, 'max_attempts_reached', retention)
  audit('max_attempts', {vid = id})
end
return redis.call('HGETALL', K.verification)
