-- SMS-pumping throttle for one destination scope (a number prefix or a country), after
-- authgear's published rule: unverified sends (sends − approvals) in a sliding day and hour may not
-- exceed  daily = max(daily floor, ratio × approvals in the day)  and
--         hourly = max(hourly floor, daily / 6, ratio × approvals in the hour).
-- Crossing either blocks the scope for a while that doubles on each repeat within a day.
-- Windows are hour buckets (the day) and 5-minute buckets (the hour) in one hash.
-- Windows count committed sends only: ``check`` decides on what is counted and counts nothing,
-- ``commit`` counts a send once the verification and its SMS are written, so a burst of refused
-- requests never moves a window (nor turns into a block for anyone else).
-- Sends decided but not yet written are reservations (KEYS[2], a sorted set of event ids by
-- time): they count against the thresholds, so concurrent requests can't all pass on the same
-- window, but a refusal they cause is "in flight, try again in a moment" and never sets a block
-- (blocks come from committed sends only). ``commit`` turns a reservation into a send; a send that
-- isn't written is released (ZREM) by the caller; a reservation a crashed request left expires.
-- KEYS[1] the scope's window hash  KEYS[2] its reservations.
-- ARGV[5] action: check | commit | convert | unconvert
-- check:   [6] daily floor [7] hourly floor [8] ratio [9] enforce 1|0 [10] block base ms
--          [11] block max ms [12] reservation id
-- commit:  [6] keep hours [7] reservation id
-- convert: [6] keep hours
-- unconvert: [6] hour bucket [7] 5-minute bucket (of the approval taken back)
-- Returns {verdict (1 allowed, 0 refused, 2 flagged but allowed), reason, retry after ms,
--          sends 24h, approvals 24h, sends 1h, approvals 1h, hour bucket, 5-minute bucket}.
local action = ARGV[5]
local hour, five = math.floor(NOW / 3600000), math.floor(NOW / 300000)

local function total(kind, width, last, count)
  local names = {}
  for b = last - count + 1, last do names[#names + 1] = kind .. width .. ':' .. b end
  local sum = 0
  for _, v in ipairs(redis.call('HMGET', KEYS[1], unpack(names))) do sum = sum + (tonumber(v) or 0) end
  return sum
end

local function keep(hours)
  redis.call('PEXPIRE', KEYS[1], hours * 3600000)
  -- Prune buckets that left every window, so an active scope doesn't grow forever.
  if redis.call('HLEN', KEYS[1]) > 2 * hours + 40 then
    for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
      local width, bucket = string.match(name, '^[sv]([hm]):(%d+)$')
      bucket = tonumber(bucket)
      if (width == 'h' and bucket <= hour - hours) or (width == 'm' and bucket <= five - 12) then
        redis.call('HDEL', KEYS[1], name)
      end
    end
  end
end

if action == 'commit' then
  redis.call('ZREM', KEYS[2], ARGV[7])
  redis.call('HINCRBY', KEYS[1], 'sh:' .. hour, 1)
  redis.call('HINCRBY', KEYS[1], 'sm:' .. five, 1)
  keep(tonumber(ARGV[6]))
  return {1, '', 0, 0, 0, 0, 0, hour, five}
end
if action == 'unconvert' then
  redis.call('HINCRBY', KEYS[1], 'vh:' .. ARGV[6], -1)
  redis.call('HINCRBY', KEYS[1], 'vm:' .. ARGV[7], -1)
  return {1, '', 0, 0, 0, 0, 0, 0, 0}
end
if action == 'convert' then
  redis.call('HINCRBY', KEYS[1], 'vh:' .. hour, 1)
  redis.call('HINCRBY', KEYS[1], 'vm:' .. five, 1)
  keep(tonumber(ARGV[6]))
  return {1, '', 0, 0, 0, 0, 0, hour, five}
end

local daily_floor, hourly_floor, ratio = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local enforce, base, cap, reservation = ARGV[9] == '1', tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12]
local s24, v24 = total('s', 'h', hour, 24), total('v', 'h', hour, 24)
local s1, v1 = total('s', 'm', five, 12), total('v', 'm', five, 12)
local counts = {s24, v24, s1, v1, hour, five}

local blocked_for = redis.call('PTTL', TAG .. 'block')
if enforce and blocked_for > 0 then
  return {0, 'blocked', blocked_for, unpack(counts)}
end
local daily = math.max(daily_floor, ratio * v24)
local hourly = math.max(hourly_floor, daily / 6, ratio * v1)
local function over(pending)
  if math.max(0, s1 - v1) + pending + 1 > hourly then return 'unverified_hourly' end
  if math.max(0, s24 - v24) + pending + 1 > daily then return 'unverified_daily' end
  return nil
end
local reason = over(0)
local verdict = 1
if reason then
  if enforce then
    -- Only enforcement escalates: a mode that records must change nothing enforcement reads.
    local level = redis.call('INCR', TAG .. 'level')
    redis.call('PEXPIRE', TAG .. 'level', 86400000)
    local duration = math.floor(math.min(cap, base * 2 ^ (level - 1)))
    redis.call('SET', TAG .. 'block', level, 'PX', duration)
    return {0, reason, duration, unpack(counts)}
  end
  verdict = 2
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', NOW - 30000)
local in_flight = redis.call('ZCARD', KEYS[2])
if enforce and not reason and over(in_flight) then
  return {0, 'in_flight', 1000, unpack(counts)}
end
redis.call('ZADD', KEYS[2], NOW, reservation)
redis.call('PEXPIRE', KEYS[2], 60000)
return {verdict, reason or '', 0, s24 + 1, v24, s1 + 1, v1, hour, five}
