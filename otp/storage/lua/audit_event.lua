-- An audit event decided outside Lua (a permission refusal, a failed check, an admin action),
-- written by lib.lua's own audit(), so its stream entry and hourly counters are named like every
-- other event's. A.event names it; its fields are the audit context (A.audit), whose
-- counter-only names ("_…") audit() reads from the context alone.
local fields = {}
for k, v in pairs(AUDIT_CTX) do
  if string.sub(k, 1, 1) ~= '_' then fields[k] = v end
end
audit(A.event, fields)
return 1
