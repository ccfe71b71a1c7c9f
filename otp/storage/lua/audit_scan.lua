-- Filter one audit stream partition inside Redis (read-only): only matches cross the wire.
-- K.stream one partition's audit stream.  ARGV[1] one JSON object (A): upper and lower, the bounds
-- as XREVRANGE's max and min; count, most entries to read; since_ms and until_ms (or '');
-- criteria, field/value pairs flattened: an entry matches when, for every field named, it holds
-- one of the values given for that field.
-- Returns {entries read, last id examined or '', 1 if it stopped at an entry older than since,
--          {id, JSON array of the entry's fields and values, ...} of the matches,
--          ts of the last entry examined (an integer) or ''}
-- The caller bounds A.count (a few hundred): the cost is about 3 µs per entry read.
local A = cjson.decode(ARGV[1])
local entries = redis.call('XREVRANGE', K.stream, A.upper, A.lower, 'COUNT', A.count)
local since, till = tonumber(A.since_ms), tonumber(A.until_ms)
local criteria = A.criteria
-- field -> {value = true}; `wanted` counts the fields, each of which must be satisfied once.
local allowed, wanted = {}, 0
for k = 1, #criteria, 2 do
  local set = allowed[criteria[k]]
  if not set then
    set = {}
    allowed[criteria[k]] = set
    wanted = wanted + 1
  end
  set[criteria[k + 1]] = true
end
-- hit[field] = index of the last entry whose value for it is allowed: no table per entry.
local hit = {}
local out, last, last_ts, stopped = {}, '', '', 0
for i = 1, #entries do
  local id, flat = entries[i][1], entries[i][2]
  -- The writers put ts first, so one comparison finds it (else the pass below does); the
  -- criteria are checked in one pass over the flat list, a field written twice judged by its
  -- last value, as a reader of the entry sees it.
  local ts
  if flat[1] == 'ts' then ts = tonumber(flat[2]) end
  if wanted > 0 or not ts then
    for j = 1, #flat, 2 do
      local name = flat[j]
      if name == 'ts' then ts = tonumber(flat[j + 1]) end
      local set = allowed[name]
      if set then hit[name] = set[flat[j + 1]] and i or 0 end
    end
  end
  ts = ts or tonumber(string.match(id, '^%d+'))
  if since and ts < since then
    stopped = 1
    break
  end
  last, last_ts = id, ts
  local ok = not (till and ts >= till)
  if ok and wanted > 0 then
    for name in pairs(allowed) do
      if hit[name] ~= i then
        ok = false
        break
      end
    end
  end
  if ok then
    out[#out + 1] = id
    out[#out + 1] = cjson.encode(flat)
  end
end
-- last_ts goes back as an integer reply (a Lua number's string form could be 1.8e+12).
return {#entries, last, stopped, out, last_ts}
