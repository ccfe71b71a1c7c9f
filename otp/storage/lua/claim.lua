-- Claim due SMS jobs of one partition under a lease: a claimed job's due time moves to the end
-- of the lease, so the job of a worker that died is claimed again once the lease runs out.
-- K.outbox the partition's outbox, K.new_jobs its jobs never claimed (and its other keys, lib.lua).
-- A.lease_ms, A.limit (most jobs), A.retention_ms
-- Returns {claimed, more}: claimed a list of {job id, verification id, send number, E.164, sealed
-- code, locale, tries, expires, name in the SMS, lease deadline, app hash, template, substitutions,
-- messaging service sid, the sender slot it waited for ("<sender>|<slot ms>", settle_job.lua's
-- paced; "" none)}; more 1 when a whole batch was looked at (more may be due), else 0.  A job
-- whose code is no longer among the kept ones (newer resends pushed it out) is dropped: its SMS
-- would carry a code that can't work.
local lease, limit, retention = A.lease_ms, A.limit, A.retention_ms
local claimed = {}
local function claim(job_id)
  local jkey = K.jobs .. job_id
  local vid, n = string.match(job_id, '^(VE%x+):(%d+)$')
  local code_field, tries_field, pace_field = job_fields(n)
  -- The sealed code, the tries and the slot are the record's (start.lua); the job hash, if any,
  -- holds the send's own choices. A job queued by an earlier version holds its code, tries and
  -- slot itself (and to, loc and x, the record's values, loc the send's: its own win, so it sends
  -- as before): the first claim moves the three onto the record. (A worker of that version would
  -- take a new job for a dead one: upgrade workers first.)
  local old_code, old_tries, old_ps, loc, app, ah, tp, sb, mg, old_to, old_x = unpack(redis.call('HMGET', jkey,
    'code', 'tries', 'ps', 'loc', 'app', 'ah', 'tp', 'sb', 'mg', 'to', 'x'))
  local to, record_loc, x, code, ps = unpack(redis.call('HMGET', vkey(vid), 'to', 'loc', 'x', code_field, pace_field))
  if old_code and to then
    code, ps = old_code, old_ps
    redis.call('HSET', vkey(vid), code_field, old_code, tries_field, old_tries or 0)
    if old_ps then redis.call('HSET', vkey(vid), pace_field, old_ps) end
    redis.call('HDEL', jkey, 'code', 'tries', 'ps')
  end
  local st = to and settle(vid, retention) or 'expired'
  if st == 'pending' and (not code or redis.call('HEXISTS', vkey(vid), 'h:' .. n) == 0) then st = 'superseded' end
  if st ~= 'pending' or NOW >= tonumber(old_x or x) then
    redis.call('ZREM', K.outbox, job_id)
    drop_job(vid, n)
    if redis.call('EXISTS', vkey(vid)) == 1 then
      update_attempt(vid, n, {status = 'canceled', error_message = 'not sent: verification ' .. st})
    end
  else
    local tries = redis.call('HINCRBY', vkey(vid), tries_field, 1)
    redis.call('ZADD', K.outbox, NOW + lease, job_id)
    claimed[#claimed + 1] = {job_id, vid, n, old_to or to, code, loc or record_loc or '', tries, old_x or x, app or '',
                             NOW + lease, ah or '', tp or '', sb or '', mg or '', ps or ''}
  end
end
-- Jobs whose lease ran out, retries and paced jobs that are due, then new jobs, oldest first: a
-- claimed new job moves to the outbox under its lease, so the list holds only what was never
-- claimed. A job queued by an earlier version waits in the outbox as a due member.
local due = redis.call('ZRANGEBYSCORE', K.outbox, '-inf', NOW, 'LIMIT', 0, limit)
local looked = #due
for _, job_id in ipairs(due) do claim(job_id) end
if #due < limit then
  local new = redis.call('LPOP', K.new_jobs, limit - #due)
  if new then
    looked = looked + #new
    -- Into the outbox, due, before any is claimed: a script that fails midway (a broken record)
    -- keeps what it wrote, and a job popped off the list must still be queued somewhere.
    local members = {}
    for _, job_id in ipairs(new) do members[#members + 1] = NOW; members[#members + 1] = job_id end
    redis.call('ZADD', K.outbox, unpack(members))
    for _, job_id in ipairs(new) do claim(job_id) end
  end
end
-- Counted as looked at, not as claimed: jobs dropped above don't hide the ones behind them.
return {claimed, looked >= limit and 1 or 0}
