-- Record what happened to one webhook event: done (every webhook served, or given up), or retry
-- (due again at A.retry_due_ms, with A.done the webhooks already served, so a retry skips them).
-- K.events, K.event, K.event_owner (the partition's keys, lib.lua).  A.event_id, A.owner, A.outcome
local eid, owner = A.event_id, A.owner
if A.outcome == 'retry' then
  if redis.call('EXISTS', eventkey(eid)) == 1 then
    redis.call('HSET', eventkey(eid), 'done', A.done)
    -- XX: an event another loop already finished stays finished.
    redis.call('ZADD', K.events, 'XX', A.retry_due_ms, eid)
  end
  return 1
end
local queue = event_queue(eid, owner)
redis.call('DEL', eventkey(eid))
redis.call('ZREM', K.events, eid)
redis.call('ZREM', eventownerkey(queue), eid)
return 1
