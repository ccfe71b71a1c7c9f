-- Start or resend a verification for one number, store the code hash and queue its SMS job,
-- all in one step: there is never a verification without its job, nor a job without it.
-- KEYS[1] the number's pending pointer for this API key (otp:{pNN}:n:<key id>:<e164>)
-- ARGV[5] new id  [6] E.164  [7] channel  [8] locale  [9] api key id  [10] ttl ms
-- [11] max check attempts  [12] max sends  [13] codes kept  [14] retention ms
-- [15] code hash  [16] sealed code for the outbox
-- Returns {mode, flat verification hash}; mode is created | resent | max_sends.
local new_id, to, channel, locale, key_id = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local ttl, max_attempts, max_sends = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local kept, retention = tonumber(ARGV[13]), tonumber(ARGV[14])
local code_hash, sealed = ARGV[15], ARGV[16]

local id, n, mode, expires
local existing = redis.call('GET', KEYS[1])
if existing and settle(existing, retention) == 'pending' then
  local sends, cap, x = unpack(redis.call('HMGET', vkey(existing), 's', 'ms', 'x'))
  if tonumber(sends) >= tonumber(cap) then
    audit('refused', {vid = existing, rule = 'verification_sends', reason = 'max_sends_reached'})
    return {'max_sends', redis.call('HGETALL', vkey(existing))}
  end
  id, n, mode, expires = existing, tonumber(sends) + 1, 'resent', tonumber(x)
  redis.call('HSET', vkey(id), 's', n, 'u', NOW)
  redis.call('HSET', ckey(id), 'h:' .. n, code_hash)
  if n - kept >= 1 then redis.call('HDEL', ckey(id), 'h:' .. (n - kept)) end
else
  id, n, mode, expires = new_id, 1, 'created', NOW + ttl
  redis.call('HSET', vkey(id), 'id', id, 'to', to, 'ch', channel, 'loc', locale, 'key', key_id,
             'st', 'pending', 'c', NOW, 'u', NOW, 'x', expires, 'a', 0, 'ma', max_attempts,
             's', 1, 'ms', max_sends)
  redis.call('PEXPIRE', vkey(id), ttl + retention)
  redis.call('HSET', ckey(id), 'h:1', code_hash)
  redis.call('PEXPIRE', ckey(id), ttl)
  redis.call('SET', KEYS[1], id, 'PX', ttl)
end

local attempt = {at = NOW, channel = channel, delivery = {status = 'queued', updated_at = NOW}}
redis.call('HSET', vkey(id), 'sa:' .. n, cjson.encode(attempt))

local job_id = id .. ':' .. n
redis.call('HSET', TAG .. 'j:' .. job_id, 'vid', id, 'n', n, 'to', to, 'code', sealed,
           'loc', locale, 'x', expires, 'tries', 0)
redis.call('PEXPIRE', TAG .. 'j:' .. job_id, expires - NOW)
redis.call('ZADD', TAG .. 'outbox', NOW, job_id)
audit(mode == 'created' and 'started' or 'resent', {vid = id, send = n})
return {mode, redis.call('HGETALL', vkey(id))}
