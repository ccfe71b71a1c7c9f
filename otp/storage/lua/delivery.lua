-- Apply a delivery report (status callback or poll).  States only move forward, so duplicates and
-- out-of-order reports are harmless.  KEYS[1] the verification.
-- ARGV[5] id  [6] send number  [7] JSON changes
-- [8] next poll due ms (0: leave the poll schedule alone, -1: stop polling)
-- Returns the attempt's delivery status after the update, or '' if the attempt is unknown.
local changes = cjson.decode(ARGV[7])
local moved, status = update_attempt(ARGV[5], ARGV[6], changes)
local member, next_poll = ARGV[5] .. ':' .. ARGV[6], tonumber(ARGV[8])
if not status or FINAL[status] or next_poll < 0 then
  redis.call('ZREM', TAG .. 'poll', member)
elseif next_poll > 0 then
  redis.call('ZADD', TAG .. 'poll', next_poll, member)
end
if moved then audit('delivery', {vid = ARGV[5], send = ARGV[6], status = status, error_code = changes.error_code or ''}) end
return status or ''
