-- Apply a delivery report (status callback or poll).  States only move forward, so duplicates and
-- out-of-order reports are harmless.  K.verification the verification, K.poll the
-- partition's poll schedule.  A.id, A.send_number, A.changes (of the send attempt),
-- A.next_poll_ms: next poll due (0: leave the poll schedule alone, -1: stop polling)
-- Returns {the attempt's delivery status after the update ('' if the attempt is unknown), 1 if this
-- report moved it (else 0), ms from its queueing to now, the country it went to ('' unknown), its
-- opt-out scope (lib.lua's dx)}.
local id, n, changes = A.id, A.send_number, A.changes
local moved, status, attempt = update_attempt(id, n, changes)
local member, next_poll = id .. ':' .. n, A.next_poll_ms
-- A final send whose price hasn't reconciled its budget note yet (bu:<n>, otp.core.budget) is
-- polled on for the price: Twilio's callbacks don't carry it.
local unpriced = status and FINAL[status] and next_poll >= 0 and redis.call('HEXISTS', vkey(id), 'bu:' .. n) == 1
if unpriced then
  if next_poll > 0 then redis.call('ZADD', K.poll, next_poll, member) end
elseif not status or FINAL[status] or next_poll < 0 then
  redis.call('ZREM', K.poll, member)
elseif next_poll > 0 then
  redis.call('ZADD', K.poll, next_poll, member)
end
if moved then audit('delivery', {vid = id, send = n, status = status, error_code = changes.error_code or ''}) end
local elapsed, country, scope = 0, '', ''
if attempt then
  elapsed = math.max(0, NOW - attempt.at)
  local dx = redis.call('HGET', vkey(id), 'dx:' .. n)
  if dx then country, scope = string.match(dx, '^([^|]*)|[^|]*|?(.*)$')
  else
    -- The report overtook the worker's record of the send (Twilio called back before its create
    -- answer was stored): the job, still queued, names the Messaging Service it went through.
    scope = redis.call('HGET', K.jobs .. member, 'mg') or ''
  end
end
return {status or '', moved and 1 or 0, elapsed, country or '', scope or ''}
