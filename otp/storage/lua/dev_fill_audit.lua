-- Synthetic audit traffic (otp/devtools/synthetic.py; bench and tests only): a batch of plausible
-- entries in one partition's audit stream, with the hourly counters lib.lua's audit() would have
-- incremented beside them.
-- K.stream one partition's audit stream  K.counters the prefix of its hourly counters
-- (keys.audit_counter_prefix; the hour comes from each entry's time), K.refusals and K.sources
-- the prefixes of its hourly refusal and source tallies, K.minutes of its minute counters.
-- ARGV[1] entries  [2] ts of the first  [3] ms between entries  [4] stream cap  [5] random seed
-- [6] the first ts that also goes into the minute counters (those live hours, not days)
local n, first, step, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local minutes_from = tonumber(ARGV[6] or '0')
math.randomseed(tonumber(ARGV[5]))
local countries = {'US', 'US', 'US', 'US', 'GB', 'GB', 'FR', 'DE', 'IN', 'BR', 'NG', 'ID'}
local codes = {US = '1', GB = '44', FR = '33', DE = '49', IN = '91', BR = '55', NG = '234', ID = '62'}
local refusals = {
  {'resend_cooldown', 'resend_too_soon'}, {'number_sends', 'number_hourly_limit'},
  {'sms_pumping_prefix', 'pumping_unverified_hourly'}, {'sms_pumping_prefix', 'prefix_blocked'},
  {'ip_sends', 'ip_hourly_limit'}, {'geo_permissions', 'country_not_allowed'},
}
-- Started verifications waiting for their approval: an approval reuses the destination of an
-- earlier start, as a real one does; starts that fall off the queue stay unverified (~18 %).
local pending, head, tail = {}, 1, 0
local function destination()
  local cc = countries[math.random(#countries)]
  -- About 20,000 prefixes per country: many repeat within a day, as real traffic's do.
  local prefix = '+' .. codes[cc] .. (200 + 17 * math.random(0, 39)) .. math.random(200, 699)
  local vid = 'VE'
  for _ = 1, 8 do vid = vid .. string.format('%04x', math.random(0, 65535)) end
  return {cc = cc, prefix = prefix, vid = vid,
          to = '+' .. codes[cc] .. '*******' .. string.format('%04d', math.random(0, 9999))}
end
for i = 1, n do
  local ts = first + (i - 1) * step
  local r = math.random()
  local v
  if r >= 0.33 and r < 0.60 and tail >= head then
    v = pending[head]
    pending[head] = nil
    head = head + 1
  else
    v = destination()
  end
  if r < 0.33 then
    tail = tail + 1
    pending[tail] = v
    if tail - head > 200 then pending[head] = nil; head = head + 1 end
  end
  local cc, prefix, to, vid = v.cc, v.prefix, v.to, v.vid
  local fields = {'ts', ts, 'to', to, 'country', cc, 'prefix', prefix, 'key', 'synthetic0000001',
                  'ip', '203.0.113.' .. math.random(1, 254), 'vid', vid}
  local hour = math.floor(ts / 3600000)
  local counter = K.counters .. hour
  local minute = ts >= minutes_from and math.floor(ts / 60000) or nil
  local ip, key = fields[12], fields[10]
  -- One tally in the hour's hash and (recent entries) the minute's.
  local function tally(counter, name_)
    redis.call('HINCRBY', counter, name_, 1)
    if minute then redis.call('HINCRBY', K.minutes .. minute, name_, 1) end
  end
  local name
  if r < 0.33 then
    name = 'started'
    fields[#fields + 1] = 'decision'; fields[#fields + 1] = 'allowed'
    tally(counter, C.sent_prefix .. prefix)
    tally(counter, C.sent_country .. cc)
    tally(K.sources .. hour, C.sent_ip .. ip)
    tally(K.sources .. hour, C.sent_key .. key)
  elseif r < 0.60 then
    name = 'approved'
    tally(counter, C.approved_prefix .. prefix)
    tally(counter, C.approved_country .. cc)
    tally(K.sources .. hour, C.approved_ip .. ip)
    tally(K.sources .. hour, C.approved_key .. key)
  elseif r < 0.78 then
    name = 'delivery'
    local status, code = 'delivered', ''
    local d = math.random()
    if d < 0.5 then status = 'sent' elseif d < 0.93 then status = 'delivered'
    elseif d < 0.98 then status, code = 'undelivered', '30003' else status, code = 'failed', '30008' end
    fields[#fields + 1] = 'status'; fields[#fields + 1] = status
    fields[#fields + 1] = 'error_code'; fields[#fields + 1] = code
    redis.call('HINCRBY', counter, C.delivery .. status .. ':' .. code, 1)
  elseif r < 0.85 then
    name = 'check_failed'
    fields[#fields + 1] = 'attempt'; fields[#fields + 1] = math.random(1, 5)
  elseif r < 0.90 then
    name = 'expired'
  elseif r < 0.93 then
    name = 'resent'
  else
    name = 'refused'
    local rule = refusals[math.random(#refusals)]
    fields[#fields + 1] = 'decision'; fields[#fields + 1] = 'refused'
    fields[#fields + 1] = 'rule'; fields[#fields + 1] = rule[1]
    fields[#fields + 1] = 'reason'; fields[#fields + 1] = rule[2]
    tally(counter, C.refused .. rule[1] .. ':' .. rule[2])
    for _, name_ in ipairs({C.refused_rule .. rule[1], C.refused_prefix .. prefix, C.refused_country .. cc,
                            C.refused_ip .. ip, C.refused_key .. key}) do
      tally(K.refusals .. hour, name_)
    end
    redis.call('PEXPIRE', K.refusals .. hour, AUDIT_COUNTER_TTL_MS)
  end
  if name == 'delivery' then
    if minute then
      redis.call('HINCRBY', K.minutes .. minute, C.delivery .. fields[#fields - 2] .. ':' .. fields[#fields], 1)
    end
  elseif name ~= 'refused' then
    tally(counter, name)
  end
  fields[#fields + 1] = 'event'; fields[#fields + 1] = name
  redis.call('XADD', K.stream, 'MAXLEN', '~', cap, '*', unpack(fields))
  redis.call('PEXPIRE', counter, AUDIT_COUNTER_TTL_MS)
  redis.call('PEXPIRE', K.sources .. hour, AUDIT_COUNTER_TTL_MS)
  if minute then redis.call('PEXPIRE', K.minutes .. minute, MINUTE_COUNTER_TTL_MS) end
end
return n
