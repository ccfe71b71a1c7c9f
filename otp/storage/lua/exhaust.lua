-- After the last allowed wrong answer: lock the verification for good.
-- K.verification the verification, and the partition's keys.  A.id, A.retention_ms
local id, retention = A.id, A.retention_ms
if redis.call('EXISTS', K.verification) == 0 then return {} end
local a, ma = unpack(redis.call('HMGET', K.verification, 'a', 'ma'))
if settle(id, retention) == 'pending' and tonumber(a) >= tonumber(ma) then
  finish(id, 'max_attempts_reached', retention)
  audit('max_attempts', {vid = id})
  local owner, ci = unpack(redis.call('HMGET', K.verification, 'key', 'ci'))
  local ips = {AUDIT_CTX.ip}
  for ip in string.gmatch(ci or '', '[^,]+') do ips[#ips + 1] = ip end
  note_lock('v:' .. id, {vid = id, key = owner, attempts = tonumber(a)}, ips, {AUDIT_CTX.key})
end
return record_of(K.verification, id)
