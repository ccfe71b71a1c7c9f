-- Read a verification, settling its expiry first.  KEYS[1] the verification.
-- ARGV[5] id  [6] retention ms
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
settle(ARGV[5], tonumber(ARGV[6]))
return redis.call('HGETALL', KEYS[1])
