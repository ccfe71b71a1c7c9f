-- Apply a delivery report (status callback or poll).  States only move forward, so duplicates and
-- out-of-order reports are harmless.  KEYS[1] the verification.
-- ARGV[5] id  [6] send number  [7] JSON changes
-- Returns the attempt's delivery status after the update, or '' if the attempt is unknown.
local moved, status = update_attempt(ARGV[5], ARGV[6], cjson.decode(ARGV[7]))
if moved then audit('delivery', {vid = ARGV[5], send = ARGV[6], status = status}) end
return status or ''
