-- An audit event decided outside Lua (a permission refusal, a failed check, an admin action),
-- written by lib.lua's own audit(): its stream entry and hourly counters are named like every
-- other event's.  KEYS: the partition's audit stream and this hour's counters (they route the
-- call to the partition's slot).  ARGV[5]: the event; its fields come as the audit context
-- (ARGV[4]), whose counter-only names ("_…") audit() reads from the context alone.
local fields = {}
for k, v in pairs(AUDIT_CTX) do
  if string.sub(k, 1, 1) ~= '_' then fields[k] = v end
end
audit(ARGV[5], fields)
return 1
