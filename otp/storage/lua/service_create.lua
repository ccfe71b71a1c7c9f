-- Create one /v2 service (otp.storage.accounts), unless its account has A.most already: the count
-- and the write in one step, so concurrent creates can't pass the cap together.
-- K.service the new service's hash, K.services its account's index (sid → created ms); both in
-- the {cfg} slot.  A: sid, created (ms), most, fields (the hash as a flat {name, value, ...} list).
-- Returns 1 if created, 0 at the cap.
local A = cjson.decode(ARGV[1])
if redis.call('ZCARD', K.services) >= tonumber(A.most) then return 0 end
redis.call('HSET', K.service, unpack(A.fields))
redis.call('ZADD', K.services, A.created, A.sid)
return 1
