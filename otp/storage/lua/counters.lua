-- Sums of one partition's hourly audit counters (otp:{pNN}:agg:<hour>, written by audit() in
-- lib.lua), computed inside Redis so that only sums cross the wire, as one JSON string: a busy
-- week holds about a million per-destination fields, which redis-py takes seconds to parse.
-- Read-only; every key of one call is in the same partition, so in one cluster slot.
-- KEYS    hourly counter hashes of one partition, in hour order
-- ARGV[1] 'events'     → JSON array with one object per key: its fields without '@' (events,
--                         refusals, deliveries, flags); the destination tallies are skipped
--         'unverified' → JSON {"prefix": {prefix: sent - approved, nonzero only},
--                              "country": {country: [sent, approved]}}, summed over the keys
--         'tallies'    → ARGV[2..] prefixes; JSON {prefix: [sent, approved]} summed over the keys
local mode = ARGV[1]

if mode == 'events' then
  local out = {}
  for i, key in ipairs(KEYS) do
    local flat = redis.call('HGETALL', key)
    local counts = {}
    for j = 1, #flat, 2 do
      if not string.find(flat[j], '@', 1, true) then counts[flat[j]] = tonumber(flat[j + 1]) end
    end
    out[i] = counts
  end
  return cjson.encode(out)
end

-- Destination tallies are named <C.sent_prefix><p>, <C.approved_prefix><p>, <C.sent_country><cc>
-- and <C.approved_country><cc> (the prelude's C, from otp/audit_fields.py). Plain prefix comparisons (string.sub) cost a fraction of a pattern match,
-- which counts with a few hundred thousand fields a week.
local SENT_PFX, APPROVED_PFX = C.sent_prefix, C.approved_prefix
local SENT_CC, APPROVED_CC = C.sent_country, C.approved_country
-- The first byte sorts a field before any comparison (sent… and approved… tallies start alike).
local SENT_BYTE, APPROVED_BYTE = string.byte(SENT_PFX, 1), string.byte(APPROVED_PFX, 1)

if mode == 'unverified' then
  local prefixes, countries = {}, {}
  local function country(cc, slot, n)
    local row = countries[cc]
    if not row then
      row = {0, 0}
      countries[cc] = row
    end
    row[slot] = row[slot] + n
  end
  for _, key in ipairs(KEYS) do
    local flat = redis.call('HGETALL', key)
    for j = 1, #flat, 2 do
      local name = flat[j]
      local first = string.byte(name, 1)
      if first == SENT_BYTE then
        if string.sub(name, 1, #SENT_PFX) == SENT_PFX then
          local p = string.sub(name, #SENT_PFX + 1)
          prefixes[p] = (prefixes[p] or 0) + tonumber(flat[j + 1])
        elseif string.sub(name, 1, #SENT_CC) == SENT_CC then
          country(string.sub(name, #SENT_CC + 1), 1, tonumber(flat[j + 1]))
        end
      elseif first == APPROVED_BYTE then
        if string.sub(name, 1, #APPROVED_PFX) == APPROVED_PFX then
          local p = string.sub(name, #APPROVED_PFX + 1)
          prefixes[p] = (prefixes[p] or 0) - tonumber(flat[j + 1])
        elseif string.sub(name, 1, #APPROVED_CC) == APPROVED_CC then
          country(string.sub(name, #APPROVED_CC + 1), 2, tonumber(flat[j + 1]))
        end
      end
    end
  end
  -- Prefixes whose every send was approved add nothing to a ranking by unverified sends, and
  -- they are most of them: leaving them out keeps the reply small and the sums exact.
  local unverified = {}
  for prefix, n in pairs(prefixes) do
    if n ~= 0 then unverified[prefix] = n end
  end
  return cjson.encode({prefix = unverified, country = countries})
end

if mode == 'tallies' then
  -- HGETALL and a lookup rather than HMGET: a hash of up to 512 fields is a ziplist, where each
  -- HMGET field is a linear search.
  local wanted, sums = {}, {}
  for i = 2, #ARGV do
    local row = {0, 0}
    sums[ARGV[i]] = row
    wanted[SENT_PFX .. ARGV[i]] = {row, 1}
    wanted[APPROVED_PFX .. ARGV[i]] = {row, 2}
  end
  for _, key in ipairs(KEYS) do
    local flat = redis.call('HGETALL', key)
    for j = 1, #flat, 2 do
      local hit = wanted[flat[j]]
      if hit then hit[1][hit[2]] = hit[1][hit[2]] + tonumber(flat[j + 1]) end
    end
  end
  return cjson.encode(sums)
end

return redis.error_reply('counters.lua: unknown mode ' .. tostring(mode))
