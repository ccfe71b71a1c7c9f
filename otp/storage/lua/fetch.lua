-- Read a verification, settling its expiry first.  K.verification the verification.
-- A.id, A.retention_ms
if redis.call('EXISTS', K.verification) == 0 then return {} end
settle(A.id, A.retention_ms)
return record_of(K.verification, A.id)
