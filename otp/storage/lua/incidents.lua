-- The Incidents view's reads (otp/core/incidents.py) over one partition's counter hashes: the
-- minute counters (keys.audit_minute_counter_of) for the short windows, the hourly refusal, source
-- and destination tallies for the long ones. Sums are made here, so only they cross the wire.
-- Read-only; every key of one call is in the same partition, so in one cluster slot.
-- KEYS    the hashes, in time order
-- ARGV[1] 'rank'   → ARGV[2] a field-name prefix (C.refused_… share 'refused@'): JSON {field: sum}
--                    of the fields starting with it, summed over the keys
--         'series' → ARGV[2] keys per time slot (n: KEYS come slot by slot, n each), ARGV[3] a JSON
--                    array of n arrays: the fields wanted from the slot's 1st … nth hash. JSON array,
--                    per slot {field: sum over the slot's keys}, non-zero only
local mode = ARGV[1]

if mode == 'rank' then
  local prefix = ARGV[2]
  local first, width = string.byte(prefix, 1), #prefix
  local sums = {}
  for _, key in ipairs(KEYS) do
    local flat = redis.call('HGETALL', key)
    for j = 1, #flat, 2 do
      local name = flat[j]
      -- The first byte settles most fields before any comparison.
      if string.byte(name, 1) == first and string.sub(name, 1, width) == prefix then
        sums[name] = (sums[name] or 0) + tonumber(flat[j + 1])
      end
    end
  end
  return cjson.encode(sums)
end

if mode == 'series' then
  local per_slot = tonumber(ARGV[2])
  -- The fields to read from the hash at each position of a slot: a slot's hashes hold different
  -- tallies (destinations, sources, refusals), so each is asked for its own.
  local fields = cjson.decode(ARGV[3])
  local slots = {}
  for i, key in ipairs(KEYS) do
    local slot, position = math.floor((i - 1) / per_slot) + 1, (i - 1) % per_slot + 1
    local wanted = fields[position]
    if #wanted > 0 then
      local row = slots[slot] or {}
      if redis.call('HLEN', key) > #wanted then
        -- HMGET of the top rows' fields: a lookup in C, where HGETALL would copy a whole busy
        -- hour (every prefix of it) into Lua.
        local values = redis.call('HMGET', key, unpack(wanted))
        for j, name in ipairs(wanted) do
          if values[j] then row[name] = (row[name] or 0) + tonumber(values[j]) end
        end
      else
        -- A hash smaller than the list (a minute's): each HMGET field would be a linear search
        -- of it, so read it whole and look the fields up.
        local set = fields[-position]
        if not set then
          set = {}
          for _, name in ipairs(wanted) do set[name] = true end
          fields[-position] = set
        end
        local flat = redis.call('HGETALL', key)
        for j = 1, #flat, 2 do
          if set[flat[j]] then row[flat[j]] = (row[flat[j]] or 0) + tonumber(flat[j + 1]) end
        end
      end
      slots[slot] = row
    end
  end
  -- A JSON array even where slots are empty objects (cjson writes {} for both).
  local parts = {}
  for s = 1, math.floor(#KEYS / per_slot) do
    local row = slots[s]
    parts[s] = (row and next(row)) and cjson.encode(row) or '{}'
  end
  return '[' .. table.concat(parts, ',') .. ']'
end

return redis.error_reply('incidents.lua: unknown mode ' .. tostring(mode))
