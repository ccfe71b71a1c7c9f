-- Cancel a pending verification.  KEYS[1] the verification.
-- ARGV[5] id  [6] retention ms  [7] owner key id, '' for any (admin)
-- Returns {changed (1|0), flat verification hash}.
local id, retention, owner = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local found_owner = redis.call('HGET', KEYS[1], 'key')
if not found_owner or (owner ~= '' and found_owner ~= owner) then return {0, {}} end
if settle(id, retention) ~= 'pending' then return {0, redis.call('HGETALL', KEYS[1])} end
finish(id, 'canceled', retention)
audit('canceled', {vid = id})
return {1, redis.call('HGETALL', KEYS[1])}
