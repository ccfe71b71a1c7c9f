-- Claim due webhook events of one partition under a lease: a claimed event's due time moves to the
-- end of the lease, so the event of a delivery loop that died is claimed again (at least once; the
-- event sid lets a receiver drop a repeat). An expiry event, due at the code's expiry, is sent only
-- if the verification is expired then (still pending at its expiry): otherwise it is dropped.
-- K.events the partition's event outbox, K.event its event hashes (and the other keys, lib.lua).
-- A.lease_ms, A.limit (most events), A.retention_ms
-- Returns a list of {event sid, type, verification id, send number, at ms, owner, error code,
-- webhooks already served (comma list), tries, lease deadline, E.164, channel, tags (JSON),
-- verification status, first try ms}.  The number is read from the verification, never stored
-- with the event.
local lease, limit, retention = A.lease_ms, A.limit, A.retention_ms
local claimed = {}
local function drop(eid, owner)
  local queue = owner and event_queue(eid, owner)
  redis.call('DEL', eventkey(eid))
  redis.call('ZREM', K.events, eid)
  if queue then redis.call('ZREM', eventownerkey(queue), eid) end
end
for _, eid in ipairs(redis.call('ZRANGEBYSCORE', K.events, '-inf', NOW, 'LIMIT', 0, limit)) do
  local t, vid, n, at, owner, ec, done, tries, first =
    unpack(redis.call('HMGET', eventkey(eid), 't', 'vid', 'n', 'at', 'ow', 'ec', 'done', 'tries', 'first'))
  local live = t and redis.call('EXISTS', vkey(vid)) == 1
  local st = live and settle(vid, retention) or ''
  if not t then
    drop(eid, nil)
  elseif t == VERIFY_EVENT.expired and st ~= 'expired' then
    drop(eid, owner)
  else
    tries = redis.call('HINCRBY', eventkey(eid), 'tries', 1)
    if not first then
      first = NOW
      redis.call('HSET', eventkey(eid), 'first', NOW)
    end
    redis.call('ZADD', K.events, NOW + lease, eid)
    local to, ch, tg = '', '', ''
    if live then
      to, ch, tg = unpack(redis.call('HMGET', vkey(vid), 'to', 'ch', 'tg'))
      ch = ch or 'sms'  -- a record keeps its channel only when it isn't SMS
    end
    claimed[#claimed + 1] = {eid, t, vid, n, at, owner, ec or '', done or '', tries, NOW + lease,
                             to or '', ch or '', tg or '', st, first}
  end
end
return claimed
