-- Change one /v2 service's MessagingConfigurations (otp.storage.accounts): a hash of country (or
-- "all") → "<MG sid>|<created ms>|<updated ms>" beside the service, changed only while the service
-- exists, so a change racing the service's deletion leaves nothing behind; a create only when the
-- country has no configuration yet, an update or a delete only when it has one.
-- K.service the service's hash, K.configs its configurations.  A: op (create | update | delete),
-- country, sid (the MG sid), at (ms, as a string).
-- Returns {outcome, the value stored (or deleted)}; outcome is ok | exists | missing | no_service.
local A = cjson.decode(ARGV[1])
if redis.call('EXISTS', K.service) == 0 then return {'no_service', ''} end
local current = redis.call('HGET', K.configs, A.country)
if A.op == 'create' then
  if current then return {'exists', current} end
  local value = A.sid .. '|' .. A.at .. '|' .. A.at
  redis.call('HSET', K.configs, A.country, value)
  return {'ok', value}
end
if not current then return {'missing', ''} end
if A.op == 'delete' then
  redis.call('HDEL', K.configs, A.country)
  return {'ok', current}
end
local created = string.match(current, '^[^|]*|(%d+)|') or A.at
local value = A.sid .. '|' .. created .. '|' .. A.at
redis.call('HSET', K.configs, A.country, value)
return {'ok', value}
