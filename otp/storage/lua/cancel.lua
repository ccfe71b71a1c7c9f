-- Cancel a pending verification.  K.verification the verification.
-- A.id, A.retention_ms, A.owner (key id, '' for any: an admin)
-- Returns {changed (1|0), flat verification hash}.
local id, retention, owner = A.id, A.retention_ms, A.owner
local found_owner = redis.call('HGET', K.verification, 'key')
if not found_owner or (owner ~= '' and found_owner ~= owner) then return {0, {}} end
if settle(id, retention) ~= 'pending' then return {0, record_of(K.verification, id)} end
finish(id, 'canceled', retention)
audit('canceled', {vid = id})
return {1, record_of(K.verification, id)}
