-- A send's real price has come (otp.core.budget.reconcile): take its budget note off the send
-- attempt (bu:<n>, written by start.lua: "estimate|day|country|scopes"), once, and move the
-- partition's hourly spend tallies by (real - estimate). K.verification the verification.
-- A.send_number, A.real (millionths; null: keep the estimate). Returns {delta, day, country, scopes, tenant}, or {} when
-- there is nothing to reconcile (unknown, or reconciled already: callbacks and polls repeat).
local field = 'bu:' .. A.send_number
local note, key, tenant = unpack(redis.call('HMGET', K.verification, field, 'key', 'ft'))
if not note then return {} end
redis.call('HDEL', K.verification, field)
local estimate, day, country, scopes = string.match(note, '^(%d+)|(%d+)|(%u*)|(%l*)$')
if not estimate then return {} end
tenant = tenant or key or ''
-- No A.real (a price in another currency): the estimate stands, and the note is done with.
local delta = (tonumber(A.real) or tonumber(estimate)) - tonumber(estimate)
if delta ~= 0 then
  redis.call('HINCRBY', K.counter, C.spend_country .. country, delta)
  redis.call('HINCRBY', K.counter, C.spend_key .. tenant, delta)
  redis.call('PEXPIRE', K.counter, AUDIT_COUNTER_TTL_MS)
end
return {delta, day, country, scopes, tenant}
