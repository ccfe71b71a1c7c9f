-- Just before sending: is the job still this worker's?  Its lease is the job's due time in the
-- outbox; if another worker took the job over after the lease ran out, the score moved and this
-- worker must not send.  Still ours: extend the lease for the send.
-- K.outbox the partition's outbox.  A.job_id, A.lease_deadline_ms (the one this worker set), A.lease_ms
-- Returns 1 if the job is still this worker's (lease extended), else 0.
local score = redis.call('ZSCORE', K.outbox, A.job_id)
if not score or tonumber(score) ~= A.lease_deadline_ms then return 0 end
redis.call('ZADD', K.outbox, NOW + A.lease_ms, A.job_id)
return 1
