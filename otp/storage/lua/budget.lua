-- One budget scope's spend today (otp.core.budget): reserve a send's estimate only if it fits,
-- or adjust the spend (a release, a reconciliation with the real price), in one step.
-- K.day the scope's counter for the day (keys.budget_day), K.limit a tenant's own budget
-- (keys.budget_limit; read only when A.limit is absent).
-- A.op 'reserve' | 'adjust', A.amount (millionths; negative to give back), A.limit (millionths,
-- or absent: the K.limit value, none there: no limit, the spend is only counted), A.ttl_ms.
-- Returns {allowed (1|0), spent after, limit (-1: none), level crossed now (0, 80 or 100) …}:
-- each level once per scope and day (a100 also when a reservation is first refused).
local amount = tonumber(A.amount)
local limit = tonumber(A.limit or redis.call('GET', K.limit) or '')
local spent = tonumber(redis.call('HGET', K.day, 's') or '0')
local crossed = {}

local function mark(level)
  if redis.call('HSETNX', K.day, 'a' .. level, NOW) == 1 then crossed[#crossed + 1] = level end
end

if A.op == 'reserve' and limit and spent + amount > limit then
  mark(100)
  redis.call('PEXPIRE', K.day, A.ttl_ms)
  return {0, spent, limit, unpack(crossed)}
end
spent = redis.call('HINCRBY', K.day, 's', amount)
redis.call('PEXPIRE', K.day, A.ttl_ms)
if limit and limit > 0 then
  if spent * 5 >= limit * 4 then mark(80) end
  if spent >= limit then mark(100) end
end
return {1, spent, limit or -1, unpack(crossed)}
