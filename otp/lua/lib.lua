-- Shared helpers, prepended to every script at load time.
-- Every script takes the same ARGV header:
--   ARGV[1] partition tag ("otp:{pNN}:"), ARGV[2] now (ms, injected so tests control time),
--   ARGV[3] audit stream cap for this partition, ARGV[4] audit context (JSON: masked number, ip, key…)
-- and builds every key it touches from the tag, so it stays inside one cluster slot.
local TAG = ARGV[1]
local NOW = tonumber(ARGV[2])
local AUDIT_MAXLEN = ARGV[3]
local AUDIT_CTX = cjson.decode(ARGV[4])

local FINAL = {delivered = true, undelivered = true, failed = true, canceled = true, read = true}
local DELIVERY_RANK = {accepted = 1, scheduled = 1, queued = 1, sending = 2, sent = 3,
                       undelivered = 4, failed = 4, canceled = 4, delivered = 5, read = 5}

local function audit(event, fields)
  local entry = {'ts', tostring(NOW), 'event', event}
  for k, v in pairs(AUDIT_CTX) do
    if fields == nil or fields[k] == nil then
      entry[#entry + 1] = k
      entry[#entry + 1] = tostring(v)
    end
  end
  if fields then
    for k, v in pairs(fields) do
      entry[#entry + 1] = k
      entry[#entry + 1] = tostring(v)
    end
  end
  redis.call('XADD', TAG .. 'audit', 'MAXLEN', '~', AUDIT_MAXLEN, '*', unpack(entry))
  -- Hourly counters beside the stream, so dashboards add up hours instead of scanning events.
  local counter = TAG .. 'agg:' .. math.floor(NOW / 3600000)
  local f = fields or {}
  local name = event
  if event == 'refused' then name = 'refused:' .. (f.rule or '') .. ':' .. (f.reason or '')
  elseif event == 'delivery' then name = 'delivery:' .. (f.status or '') .. ':' .. (f.error_code or '') end
  redis.call('HINCRBY', counter, name, 1)
  -- Verifications and approvals per destination, to rank prefixes and countries by unused codes.
  if (event == 'started' or event == 'approved') and AUDIT_CTX.prefix then
    local tally = event == 'started' and 'sent' or 'approved'
    redis.call('HINCRBY', counter, tally .. '@prefix:' .. AUDIT_CTX.prefix, 1)
    redis.call('HINCRBY', counter, tally .. '@country:' .. (AUDIT_CTX.country or ''), 1)
  end
  if AUDIT_CTX.flagged then redis.call('HINCRBY', counter, 'flagged:' .. AUDIT_CTX.flagged, 1) end
  redis.call('PEXPIRE', counter, 8 * 86400000)
end

local function vkey(id) return TAG .. 'v:' .. id end
local function ckey(id) return TAG .. 'c:' .. id end
-- The pending pointer is per API key and number: two tenants never resend each other's codes.
local function nkey(owner, to) return TAG .. 'n:' .. owner .. ':' .. to end

-- Drops the code material and the number's pending pointer, and keeps the record readable
-- for the retention period.
local function finish(id, status, retention_ms, extra)
  local key = vkey(id)
  local to, owner = unpack(redis.call('HMGET', key, 'to', 'key'))
  redis.call('HSET', key, 'st', status, 'u', NOW)
  if extra then redis.call('HSET', key, unpack(extra)) end
  redis.call('DEL', ckey(id))
  if redis.call('GET', nkey(owner, to)) == id then redis.call('DEL', nkey(owner, to)) end
  redis.call('PEXPIRE', key, retention_ms)
end

-- Lazy expiry: the stored expiry, compared with the injected clock, is the truth; key TTLs only
-- collect garbage.
local function settle(id, retention_ms)
  local key = vkey(id)
  local st, x = unpack(redis.call('HMGET', key, 'st', 'x'))
  if st == 'pending' and NOW >= tonumber(x) then
    finish(id, 'expired', retention_ms)
    audit('expired', {vid = id})
    return 'expired'
  end
  return st
end

local function update_attempt(id, n, changes)
  local key = vkey(id)
  local raw = redis.call('HGET', key, 'sa:' .. n)
  if not raw then return nil end
  local attempt = cjson.decode(raw)
  local delivery = attempt.delivery
  local moved = false
  if changes.status then
    local old = DELIVERY_RANK[delivery.status] or 0
    local new = DELIVERY_RANK[changes.status] or 0
    if new > old then
      delivery.status = changes.status
      delivery.updated_at = NOW
      moved = true
      if changes.error_code then delivery.error_code = changes.error_code end
      if changes.error_message then delivery.error_message = changes.error_message end
    end
  end
  for _, name in ipairs({'message_sid', 'segments', 'price', 'price_unit', 'sent_at', 'last_error', 'tries'}) do
    if changes[name] ~= nil and changes[name] ~= cjson.null then attempt[name] = changes[name] end
  end
  redis.call('HSET', key, 'sa:' .. n, cjson.encode(attempt))
  return moved, delivery.status
end
