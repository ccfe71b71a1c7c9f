-- Record what happened to one send: sent (Twilio accepted it), retry (transient failure, due
-- again later), paced (waiting for the slot its sender reserved, A.pace = "<sender>|<slot ms>";
-- not a try, so the next claim doesn't look for an earlier send) or failed (permanent).  The Message SID is stored before the job is dropped.
-- A sent message that has no final state yet is scheduled for a status poll, in case its
-- status callback never comes.
-- K.outbox the partition's outbox, K.poll its poll schedule (and its other keys, lib.lua).
-- A.job_id, A.outcome, A.changes (of the send attempt), A.retry_due_ms, A.poll_due_ms; for paced,
-- A.pace and A.over_bound (the wait is past OTP_SENDER_MAX_WAIT: a sender_queued audit event).
local job_id, outcome, changes, due = A.job_id, A.outcome, A.changes, A.retry_due_ms
local poll_due = A.poll_due_ms
local vid, n = string.match(job_id, '^(VE%x+):(%d+)$')
local moved, status = update_attempt(vid, n, changes)
local _, tries_field, pace_field = job_fields(n)
if outcome == 'paced' then
  -- (Never on a record that is gone: a field alone would read as a verification.)
  if redis.call('ZSCORE', K.outbox, job_id) and redis.call('EXISTS', vkey(vid)) == 1 then
    redis.call('ZADD', K.outbox, 'XX', due, job_id)
    redis.call('HINCRBY', vkey(vid), tries_field, -1)
    redis.call('HSET', vkey(vid), pace_field, A.pace)
  end
elseif outcome == 'retry' then
  -- XX: a job another worker already finished stays finished. A retry takes a new sender slot.
  redis.call('ZADD', K.outbox, 'XX', due, job_id)
  redis.call('HDEL', vkey(vid), pace_field)
else
  redis.call('ZREM', K.outbox, job_id)
  drop_job(vid, n)
end
if outcome == 'sent' and status and not FINAL[status] then
  redis.call('ZADD', K.poll, poll_due, job_id)
end
if A.over_bound then
  audit('sender_queued', {vid = vid, send = n, sender = changes.sender or '', wait_ms = changes.queued_ms or ''})
end
if moved then audit('delivery', {vid = vid, send = n, status = status, error_code = changes.error_code or ''}) end
return status or ''
