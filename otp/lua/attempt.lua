-- Count one check attempt *before* any comparison, and hand back the code hashes to compare.
-- KEYS[1] the verification (or the number's pending pointer when checking by number)
-- ARGV[5] id or ''  [6] E.164 or ''  [7] retention ms  [8] caller's key id  [9] '1' if admin
-- A verification of another API key is not found: tenants can't probe each other.
-- Returns {outcome, id, attempts, max_attempts, {h:n, hash…}, flat verification hash};
-- outcome is counted | not_found | a status.
local id, to, retention, caller, admin = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9] == '1'
if id == '' then
  id = redis.call('GET', nkey(caller, to))
  if not id then return {'not_found'} end
end
local key = vkey(id)
local found_to, found_owner = unpack(redis.call('HMGET', key, 'to', 'key'))
if not found_to then return {'not_found'} end
if to ~= '' and found_to ~= to then return {'not_found'} end
if not admin and found_owner ~= caller then return {'not_found'} end
local st = settle(id, retention)
local a, ma = unpack(redis.call('HMGET', key, 'a', 'ma'))
if st ~= 'pending' then return {st, id, a, ma, {}, redis.call('HGETALL', key)} end
if tonumber(a) >= tonumber(ma) then
  return {'max_attempts_reached', id, a, ma, {}, redis.call('HGETALL', key)}
end
a = redis.call('HINCRBY', key, 'a', 1)
redis.call('HSET', key, 'u', NOW)
return {'counted', id, a, ma, redis.call('HGETALL', ckey(id)), redis.call('HGETALL', key)}
