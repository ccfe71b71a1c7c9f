-- Whether the number's own limits (lib.lua's number_verdict) refuse one API key's start now
-- because of that key's own sends, asked before the admission: a start they refuse then never
-- holds a place in a limit or a budget that a concurrent start reads (DESIGN §2). start.lua
-- decides them again, in the same step as the send, so a start that passes here can still be
-- refused there (a concurrent send got the last place).
-- A refusal another API key's sends are behind (its shared hold, or a send of another key's in
-- the rule's window) is left to start.lua, after the admission, as before: answered here, ahead
-- of the admission's own refusals, it would let a key its budget or limits refuse probe for free
-- which numbers other tenants just sent to.
-- K.number the number's state (keys.number_state). A: key_id, number_limits and retention_ms as
-- for start.lua, and apply: false only reads the verdict; true also audits a refusal and sets its
-- hold. Returns 0 when the limits allow the start (or leave it to start.lua); 1 when they refuse
-- it (apply false); with apply the refusal as start.lua returns it.
local verdict = number_verdict(A.key_id, A.number_limits, A.retention_ms)
if not verdict.refused or number_refusal_foreign(verdict, A.key_id) == 1 then return 0 end
if not A.apply then return 1 end
-- No admission ran: its counts are none (an object still, as every refusal's).
return refuse_number(verdict, A.key_id, A.number_limits.shared_hold_ms, '{}')
