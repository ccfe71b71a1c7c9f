-- Start or resend a verification for one number, store the code hash and queue its SMS job,
-- all in one step: there is never a verification without its job, nor a job without it.
-- The number's own limits are decided here too, in the same step, so they hold under concurrency.
-- K.number the number's state (keys.number_state): per API key its pending verification
-- (p:<key id>), and the log of its sends over the last day (s), shared by every API key; the key
-- of the last send (lk) and the time of the latest send by any other key (ot), so a refusal can
-- tell whether another tenant's sends were behind it without a log per key. The other keys are
-- the partition's (lib.lua).
-- A: the fields of otp.model.StartArgs (documented there), and wake = {channel, message}.
-- A.number_limits.shared_hold_ms: how long a key refused because of another key's sends must wait:
-- a fixed hold (hd:<key id>), so polling can't find out when those sends were.
-- A.custom_code: its approval proves nothing about the number, so it never counts as a
-- conversion (cu on the record). A.unproven, A.ip_scope, A.fraud_tenant: kept on a new record
-- (up, ips, ft) so the approval converts where the send counted.
-- Returns {mode, flat verification hash, rule, reason, retry after ms, 1 if a number-wide refusal
-- involved another API key's sends (the reply must not reveal them)};
-- mode is created | resent | refused.
local new_id, to, channel, locale, key_id = A.new_id, A.to, A.channel, A.locale, A.key_id
local ttl, max_attempts, max_sends = A.ttl_ms, A.max_attempts, A.max_sends
local kept, retention = A.codes_kept, A.retention_ms
local code_hash, sealed = A.code_hash, A.sealed_code
local limits = A.number_limits
local per_hour, per_day = limits.sends_per_hour, limits.sends_per_day
local decisions, app_name, hold_ms = A.decisions, A.app_name, limits.shared_hold_ms
local app_hash, tags = A.app_hash or '', A.tags or ''
local template, substitutions, sender = A.template or '', A.substitutions or '', A.messaging_service_sid or ''
local custom = A.custom_code
local unproven, ip_scope, fraud_tenant = A.unproven, A.ip_scope, A.fraud_tenant or ''

-- The number's own limits (lib.lua's number_verdict): number_gate.lua read them before the
-- admission, and they are decided again here, in the same step as the send.
local verdict = number_verdict(key_id, limits, retention)
if verdict.refused then return refuse_number(verdict, key_id, hold_ms, decisions) end
local existing, sent, hour, day = verdict.existing, verdict.sent, verdict.hour, verdict.day
sent[#sent + 1] = NOW
-- The rules read at most this many of the latest sends: the log stays bounded even for a
-- safe-listed number that no limit stops.
local keep = math.max(per_day, per_hour, 17)
local encoded = {}
for i = math.max(1, #sent - keep + 1), #sent do encoded[#encoded + 1] = base36(sent[i]) end
redis.call('HSET', K.number, 's', table.concat(encoded, ' '))
local last_key = redis.call('HGET', K.number, 'lk')
if last_key ~= key_id then
  -- From now on the previous sender is "another key" for this one.
  if last_key and #sent > 1 then redis.call('HSET', K.number, 'ot', base36(sent[#sent - 1]))
  else redis.call('HDEL', K.number, 'ot') end
  redis.call('HSET', K.number, 'lk', key_id)
end
redis.call('PEXPIRE', K.number, math.max(86400000, ttl + retention))

local id, n, mode, expires
if existing then
  local sends, x = unpack(redis.call('HMGET', vkey(existing), 's', 'x'))
  id, n, mode, expires = existing, tonumber(sends) + 1, 'resent', tonumber(x)
  -- The code hashes are fields of the verification itself (h:<n>, at most 64 bytes each, so the
  -- hash keeps Redis's compact encoding): one key less per verification.
  redis.call('HSET', vkey(id), 's', n, 'u', NOW, 'h:' .. n, code_hash)
  if n - kept >= 1 then redis.call('HDEL', vkey(id), 'h:' .. (n - kept)) end
else
  id, n, mode, expires = new_id, 1, 'created', NOW + ttl
  -- No id (its key's: record_of hands it out), and the channel and locale only when they aren't
  -- the defaults: every byte of a pending record is kept per verification.
  redis.call('HSET', vkey(id), 'to', to, 'key', key_id,
             'st', 'pending', 'c', NOW, 'u', NOW, 'x', expires, 'a', 0, 'ma', max_attempts,
             's', 1, 'ms', max_sends, 'h:1', code_hash)
  if channel ~= 'sms' then redis.call('HSET', vkey(id), 'ch', channel) end
  if locale ~= '' then redis.call('HSET', vkey(id), 'loc', locale) end
  redis.call('PEXPIRE', vkey(id), ttl + retention)
  if unproven then redis.call('HSET', vkey(id), 'up', 1) end
  if ip_scope ~= '' then redis.call('HSET', vkey(id), 'ips', ip_scope) end
  if fraud_tenant ~= '' then redis.call('HSET', vkey(id), 'ft', fraud_tenant) end
  redis.call('HSET', K.number, 'p:' .. key_id, id)
end

if custom then redis.call('HSET', vkey(id), 'cu', 1) end
-- The caller's tags (JSON, bounded by the adapter): a start or resend that gives some sets them.
if tags ~= '' then redis.call('HSET', vkey(id), 'tg', tags) end
-- What Twilio Lookup said the number is ("<type>|<carrier>", otp.core.line_types), for /v2's lookup.
if (A.line_type or '') ~= '' then redis.call('HSET', vkey(id), 'lt', A.line_type) end
write_attempt(id, n, {at = NOW, status = 'queued', updated = NOW, tries = '0'})
-- A.budget: what this send reserved in the spend budgets, until its real price reconciles it.
if A.budget and A.budget ~= '' then redis.call('HSET', vkey(id), 'bu:' .. n, A.budget) end
-- A.events: the owner has webhooks. Its events start here, in the same step as the record; the
-- expiry event is scheduled for the code's expiry (a resend keeps it: the expiry doesn't move).
if A.events then
  redis.call('HSET', vkey(id), 'ev', 1)
  if mode == 'created' then emit_event(id, VERIFY_EVENT.started, 0, NOW) end
  emit_event(id, VERIFY_EVENT.expired, 0, expires)
end

local job_id = id .. ':' .. n
-- The job's sealed code is a field of the record (lib.lua's job_fields): one key less per queued
-- SMS, and a finished verification drops it with its code hashes. A job hash (K.jobs) holds only
-- the send's own choices when it makes any: the name in the SMS, a locale other than the record's,
-- the app hash, the template, its substitutions (which can be long: on the record they would cost
-- its compact encoding) and the Messaging Service. Its id names the verification and the send;
-- claim.lua reads the number and the expiry from the record.
redis.call('HSET', vkey(id), (job_fields(n)), sealed)
local choices = {}
if app_name ~= '' then choices[#choices + 1] = 'app'; choices[#choices + 1] = app_name end
local record_loc = redis.call('HGET', vkey(id), 'loc') or ''
if locale ~= record_loc then choices[#choices + 1] = 'loc'; choices[#choices + 1] = locale end
-- The hash belongs to this send (the app that asked for it), not to the verification: a resend
-- from another client says again whether it wants one.
if app_hash ~= '' then choices[#choices + 1] = 'ah'; choices[#choices + 1] = app_hash end
if template ~= '' then choices[#choices + 1] = 'tp'; choices[#choices + 1] = template end
if substitutions ~= '' then choices[#choices + 1] = 'sb'; choices[#choices + 1] = substitutions end
if sender ~= '' then choices[#choices + 1] = 'mg'; choices[#choices + 1] = sender end
if #choices > 0 then
  redis.call('HSET', K.jobs .. job_id, unpack(choices))
  redis.call('PEXPIRE', K.jobs .. job_id, expires - NOW)
end
redis.call('RPUSH', K.new_jobs, job_id)
redis.call('PUBLISH', A.wake[1], A.wake[2])
audit(mode == 'created' and 'started' or 'resent', {vid = id, send = n, decision = 'allowed',
      counts = decisions, number_sends_1h = hour + 1, number_sends_24h = day + 1})
return {mode, record_of(vkey(id), id), '', '', 0, 0}
