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
  local fields = redis.call('HMGET', jkey, 'to', 'code', 'loc', 'tries', 'x', 'app', 'ah', 'tp', 'sb', 'mg', 'ps')
  local live = fields[1] and redis.call('EXISTS', vkey(vid)) == 1
  local st = live and settle(vid, retention) or 'expired'
  if st == 'pending' and redis.call('HEXISTS', vkey(vid), 'h:' .. n) == 0 then st = 'superseded' end
  if st ~= 'pending' or NOW >= tonumber(fields[5]) then
    redis.call('ZREM', K.outbox, job_id)
    redis.call('DEL', jkey)
    if redis.call('EXISTS', vkey(vid)) == 1 then
      update_attempt(vid, n, {status = 'canceled', error_message = 'not sent: verification ' .. st})
    end
  else
    local tries = redis.call('HINCRBY', jkey, 'tries', 1)
    redis.call('ZADD', K.outbox, NOW + lease, job_id)
    claimed[#claimed + 1] = {job_id, vid, n, fields[1], fields[2], fields[3], tries, fields[5], fields[6] or '',
                             NOW + lease, fields[7] or '', fields[8] or '', fields[9] or '', fields[10] or '',
                             fields[11] or ''}
  end
end
return claimed
