-- Count one check attempt *before* any comparison, and hand back the code hashes to compare.
-- K.check_log the rate key's checks of the last minute in this partition (keys.check_log); the
-- other keys are the partition's (lib.lua).
-- A: the fields of otp.model.CheckArgs: verification_id ('' to find the caller's pending one by
-- number), to (E.164 or ''), retention_ms, caller (key id), admin, failed_per_hour (failed checks
-- allowed per number per hour, per API key), checks_per_minute (in this partition for the rate
-- key, 0: no limit), rate_key (the API key, or the /v2 account), member (unique, for its log),
-- replay_ms (how long after an approval the approving code may repeat it), replays (how many times)
-- Checks are rate-limited per key first, before any lookup or comparison: a flood of checks for
-- unknown ids costs neither argon2 nor more than this. Every allowed check counts (committed:
-- it goes on to a lookup and a comparison or its decoy).
-- A verification of another API key is not found: tenants can't probe each other.
-- The attempt also counts as a failed check of the number (for this API key) until an approval
-- takes it back, so guesses spread over many verifications of one number are capped too.
-- Returns {outcome, id, attempts, max_attempts, the approving code's hash while it may repeat
-- the approval ('' otherwise), flat verification hash (with its h:<n> code hashes), retry ms};
-- outcome is counted | not_found | throttled | refused | a status.
local id, to, retention, caller, admin = A.verification_id, A.to, A.retention_ms, A.caller, A.admin
local failed_per_hour = A.failed_per_hour
local checks_allowed, member, replay_ms = A.checks_per_minute, A.member, A.replay_ms
local replays = A.replays
if checks_allowed > 0 then
  local log = K.check_log
  redis.call('ZREMRANGEBYSCORE', log, '-inf', NOW - 60000)
  local recent = redis.call('ZCARD', log)
  if recent >= checks_allowed then
    local freeing = redis.call('ZRANGE', log, recent - checks_allowed, recent - checks_allowed, 'WITHSCORES')
    return {'throttled', '', 0, 0, '', {}, math.max(1, tonumber(freeing[2]) + 60000 - NOW)}
  end
  redis.call('ZADD', log, NOW, member)
  redis.call('PEXPIRE', log, 60000)
end
if id == '' then
  id = redis.call('HGET', numkey(to), 'p:' .. caller)
  if not id then return {'not_found'} end
end
local key = vkey(id)
local found_to, found_owner = unpack(redis.call('HMGET', key, 'to', 'key'))
if not found_to then return {'not_found'} end
if to ~= '' and found_to ~= to then return {'not_found'} end
if not admin and found_owner ~= caller then return {'not_found'} end
local st = settle(id, retention)
local a, ma = unpack(redis.call('HMGET', key, 'a', 'ma'))
if st ~= 'pending' then
  local replay = ''
  if st == 'approved' then
    local approved_at = tonumber(redis.call('HGET', key, 'aa') or '0')
    -- The key's TTL only collects it; "now" decides. Each look counts, right code or not: an
    -- approved verification is not a free argon2 oracle.
    local approving = approvingkey(id)
    if NOW <= approved_at + replay_ms and redis.call('EXISTS', approving) == 1 then
      if redis.call('HINCRBY', approving, 'n', 1) <= replays then replay = redis.call('HGET', approving, 'h') end
    end
  end
  return {st, id, a, ma, replay, record_of(key, id)}
end
if tonumber(a) >= tonumber(ma) then
  return {'max_attempts_reached', id, a, ma, '', record_of(key, id)}
end
local failed_key = failedkey(found_owner, found_to)
redis.call('ZREMRANGEBYSCORE', failed_key, '-inf', NOW - 3600000)
local failed = redis.call('ZCARD', failed_key)
if failed >= failed_per_hour then
  local freeing = redis.call('ZRANGE', failed_key, failed - failed_per_hour, failed - failed_per_hour, 'WITHSCORES')
  local retry = math.max(1, tonumber(freeing[2]) + 3600000 - NOW)
  audit('refused', {vid = id, decision = 'refused', rule = 'number_failed_checks',
                    reason = 'too_many_failed_checks', retry_after = math.ceil(retry / 1000)})
  -- For the brute-force list: the IPs that checked the failed verifications (their ci), this one's.
  local ips = {AUDIT_CTX.ip}
  for _, m in ipairs(redis.call('ZRANGE', failed_key, 0, -1)) do
    local vid = string.match(m, '^([^:]+)')
    for ip in string.gmatch(redis.call('HGET', vkey(vid), 'ci') or '', '[^,]+') do ips[#ips + 1] = ip end
  end
  note_lock('n:' .. id, {vid = id, key = found_owner, ['until'] = NOW + retry}, ips, {caller})
  return {'refused', id, a, ma, '', record_of(key, id), retry}
end
a = redis.call('HINCRBY', key, 'a', 1)
redis.call('ZADD', failed_key, NOW, id .. ':' .. a)
redis.call('PEXPIRE', failed_key, 3600000)
redis.call('HSET', key, 'u', NOW)
-- The IPs this verification was checked from (when the caller says), for the brute-force list.
if AUDIT_CTX.ip then
  local ci = redis.call('HGET', key, 'ci')
  local more = add_listed(ci, AUDIT_CTX.ip, 64)
  if more ~= (ci or '') then redis.call('HSET', key, 'ci', more) end
end
-- The code hashes travel in the record (its h:<n> fields).
return {'counted', id, a, ma, '', record_of(key, id)}
