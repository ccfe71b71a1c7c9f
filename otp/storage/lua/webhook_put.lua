-- Store one webhook of a tenant, unless it would be one more than A.cap. K.hooks the tenant's
-- webhooks (keys.webhooks_of).  ARGV[1] JSON {sid, record, cap}.  Returns 1 if stored, else 0.
local A = cjson.decode(ARGV[1])
if redis.call('HEXISTS', K.hooks, A.sid) == 0 and redis.call('HLEN', K.hooks) >= A.cap then return 0 end
redis.call('HSET', K.hooks, A.sid, A.record)
return 1
