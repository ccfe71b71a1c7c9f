-- Just before sending: is the job still this worker's?  Its lease is the job's due time in the
-- outbox; if another worker took the job over after the lease ran out, the score moved and this
-- worker must not send.  Still ours: extend the lease for the send.
-- KEYS[1] the partition's outbox.  ARGV[5] job id  [6] the lease deadline this worker set  [7] lease ms
-- Returns 1 if the job is still this worker's (lease extended), else 0.
local score = redis.call('ZSCORE', KEYS[1], ARGV[5])
if not score or tonumber(score) ~= tonumber(ARGV[6]) then return 0 end
redis.call('ZADD', KEYS[1], NOW + tonumber(ARGV[7]), ARGV[5])
return 1
