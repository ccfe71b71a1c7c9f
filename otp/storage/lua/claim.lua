-- Claim due SMS jobs of one partition under a lease: a claimed job's due time moves to the end
-- of the lease, so the job of a worker that died is claimed again once the lease runs out.
-- K.outbox the partition's outbox (and its other keys, lib.lua).  A.lease_ms, A.limit (most jobs),
-- A.retention_ms
-- Returns a list of {job id, verification id, send number, E.164, sealed code, locale, tries, expires,
-- name in the SMS, lease deadline, app hash, template, substitutions, messaging service sid,
-- the sender slot it waited for ("<sender>|<slot ms>", settle_job.lua's paced; "" none)}.  A job whose code is no longer among the kept ones (newer
-- resends pushed it out) is dropped: its SMS would carry a code that can't work.
local lease, limit, retention = A.lease_ms, A.limit, A.retention_ms
local claimed = {}
for _, job_id in ipairs(redis.call('ZRANGEBYSCORE', K.outbox, '-inf', NOW, 'LIMIT', 0, limit)) do
  local jkey = K.jobs .. job_id
  local vid, n = string.match(job_id, '^(VE%x+):(%d+)$')
  -- A job holds the sealed code and the send's own choices; the number, the expiry and (unless
  -- the send chose another) the locale are the record's. A job queued by an earlier version also
  -- holds to, loc and x (the record's values, loc the send's): its own win, so it sends as before.
  -- (A worker of that version would take a new job for a dead one: upgrade workers first.)
  local code, loc, app, ah, tp, sb, mg, ps, old_to, old_x = unpack(redis.call('HMGET', jkey, 'code', 'loc', 'app',
    'ah', 'tp', 'sb', 'mg', 'ps', 'to', 'x'))
  local to, record_loc, x = unpack(redis.call('HMGET', vkey(vid), 'to', 'loc', 'x'))
  local live = code and to
  local st = live and settle(vid, retention) or 'expired'
  if st == 'pending' and redis.call('HEXISTS', vkey(vid), 'h:' .. n) == 0 then st = 'superseded' end
  if st ~= 'pending' or NOW >= tonumber(old_x or x) then
    redis.call('ZREM', K.outbox, job_id)
    redis.call('DEL', jkey)
    if redis.call('EXISTS', vkey(vid)) == 1 then
      update_attempt(vid, n, {status = 'canceled', error_message = 'not sent: verification ' .. st})
    end
  else
    local tries = redis.call('HINCRBY', jkey, 'tries', 1)
    redis.call('ZADD', K.outbox, NOW + lease, job_id)
    claimed[#claimed + 1] = {job_id, vid, n, old_to or to, code, loc or record_loc or '', tries, old_x or x, app or '',
                             NOW + lease, ah or '', tp or '', sb or '', mg or '', ps or ''}
  end
end
return claimed
