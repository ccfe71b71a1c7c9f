-- Record what happened to one send: sent (Twilio accepted it), retry (transient failure, due
-- again later) or failed (permanent).  The Message SID is stored before the job is dropped.
-- A sent message that has no final state yet is scheduled for a status poll, in case its
-- status callback never comes.
-- KEYS[1] the partition's outbox.  ARGV[5] job id  [6] outcome  [7] JSON changes  [8] retry due ms
-- [9] poll due ms
local job_id, outcome, changes, due = ARGV[5], ARGV[6], cjson.decode(ARGV[7]), tonumber(ARGV[8])
local poll_due = tonumber(ARGV[9])
local vid, n = string.match(job_id, '^(VE%x+):(%d+)$')
local moved, status = update_attempt(vid, n, changes)
if outcome == 'retry' then
  -- XX: a job another worker already finished stays finished.
  redis.call('ZADD', KEYS[1], 'XX', due, job_id)
else
  redis.call('ZREM', KEYS[1], job_id)
  redis.call('DEL', TAG .. 'j:' .. job_id)
end
if outcome == 'sent' and status and not FINAL[status] then
  redis.call('ZADD', TAG .. 'poll', poll_due, job_id)
end
if moved then audit('delivery', {vid = vid, send = n, status = status, error_code = changes.error_code or ''}) end
return status or ''
