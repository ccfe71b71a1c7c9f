-- A Verify v2 service's Rate Limits and their Buckets, in one hash (K.limits): per rate limit, its
-- record as JSON under 'n:<unique name>' and its unique name under 's:<RK sid>'. Each operation is
-- atomic, so the caps (A.most) and the uniqueness of names and of a rate limit's bucket intervals
-- hold under concurrent writes. The record:
--   {sid, unique_name, description (absent for none), created, updated (ms), seq (creation order),
--    buckets = {{sid, max, interval (s), created, updated}, ...} in creation order}
-- A.op: create (A.sid, A.unique_name, A.description, A.most), or on the rate limit A.ref (its sid
-- or unique name): get, update (A.description), delete, bucket_create (A.sid, A.max, A.interval,
-- A.most), bucket_update (A.bucket, A.max, A.interval: each optional), bucket_delete (A.bucket).
-- Returns {status, the record as JSON or ''}: status 'ok', 'none' (no such rate limit), 'no_bucket',
-- 'exists' (the name, or the bucket interval, is taken) or 'full' (at the cap).
local op = A.op

local function save(record)
  local encoded = cjson.encode(record)
  redis.call('HSET', K.limits, 'n:' .. record.unique_name, encoded, 's:' .. record.sid, record.unique_name)
  return {'ok', encoded}
end

if op == 'create' then
  if redis.call('HEXISTS', K.limits, 'n:' .. A.unique_name) == 1 then return {'exists', ''} end
  -- Two fields per rate limit, and the creation counter 'seq' (lists go in its order).
  if math.floor(redis.call('HLEN', K.limits) / 2) >= tonumber(A.most) then return {'full', ''} end
  local seq = redis.call('HINCRBY', K.limits, 'seq', 1)
  return save({sid = A.sid, unique_name = A.unique_name, description = A.description,
               created = NOW, updated = NOW, seq = seq, buckets = {}})
end

local name = redis.call('HGET', K.limits, 's:' .. A.ref)
if not name and redis.call('HEXISTS', K.limits, 'n:' .. A.ref) == 1 then name = A.ref end
if not name then return {'none', ''} end
local record = cjson.decode(redis.call('HGET', K.limits, 'n:' .. name))

if op == 'get' then return {'ok', cjson.encode(record)} end
if op == 'update' then
  if A.description ~= nil then record.description = A.description end
  record.updated = NOW
  return save(record)
end
if op == 'delete' then
  redis.call('HDEL', K.limits, 'n:' .. name, 's:' .. record.sid)
  return {'ok', ''}
end

local buckets = record.buckets
local function interval_taken(interval, except)
  for _, b in ipairs(buckets) do
    if b.interval == interval and b.sid ~= except then return true end
  end
  return false
end

if op == 'bucket_create' then
  if #buckets >= tonumber(A.most) then return {'full', ''} end
  if interval_taken(A.interval, nil) then return {'exists', ''} end
  buckets[#buckets + 1] = {sid = A.sid, max = A.max, interval = A.interval, created = NOW, updated = NOW}
  record.buckets = buckets
  return save(record)
end

local index = nil
for i, b in ipairs(buckets) do
  if b.sid == A.bucket then index = i end
end
if not index then return {'no_bucket', ''} end
if op == 'bucket_update' then
  if A.interval ~= nil and interval_taken(A.interval, A.bucket) then return {'exists', ''} end
  local b = buckets[index]
  if A.max ~= nil then b.max = A.max end
  if A.interval ~= nil then b.interval = A.interval end
  b.updated = NOW
  return save(record)
end
if op == 'bucket_delete' then
  table.remove(buckets, index)
  record.buckets = buckets
  return save(record)
end
return redis.error_reply('unknown op ' .. tostring(op))
