-- Filter one audit stream partition inside Redis (read-only): only matches cross the wire.
-- KEYS[1] one partition's audit stream
-- ARGV[1] upper bound, as XREVRANGE's max  [2] lower bound, as its min  [3] most entries to read
-- [4] since ms or ''  [5] until ms or ''  [6..] field, value pairs that must all match
-- Returns {entries read, last id examined or '', 1 if it stopped at an entry older than since,
--          {id, JSON array of the entry's fields and values, ...} of the matches}
local entries = redis.call('XREVRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local since, till = tonumber(ARGV[4]), tonumber(ARGV[5])
local out, last, stopped = {}, '', 0
for i = 1, #entries do
  local id, flat = entries[i][1], entries[i][2]
  local fields = {}
  for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
  local ts = tonumber(fields.ts) or tonumber(string.match(id, '^%d+'))
  if since and ts < since then
    stopped = 1
    break
  end
  last = id
  local ok = not (till and ts >= till)
  for k = 6, #ARGV, 2 do
    if not ok then break end
    ok = fields[ARGV[k]] == ARGV[k + 1]
  end
  if ok then
    out[#out + 1] = id
    out[#out + 1] = cjson.encode(flat)
  end
end
return {#entries, last, stopped, out}
