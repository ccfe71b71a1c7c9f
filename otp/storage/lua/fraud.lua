-- The SMS-pumping windows of one scope (a number prefix, a range, a country, an end-user IP of a
-- tenant, a tenant), and its block. The Policy reads several scopes in one round trip and decides
-- (otp/core/policy.py); this script keeps each scope's counts atomic and applies the scope's own
-- threshold, after authgear's published rule: unverified sends (sends − approvals) in a sliding
-- day and hour may not exceed  daily = daily floor + ratio × approvals in the day  and
--                              hourly = hourly floor + ratio × approvals in the hour
-- (added, not the larger of the two as authgear has it: a real prefix's unlucky day, 2 in 3
-- approved, stays clear, and a pumped one with no approvals has the floor). A range or a country
-- judges its sends to unproven prefixes only (basis "unproven", the day): the only ones it refuses.
-- Crossing either (on committed sends) blocks the scope for a while that doubles with each block;
-- the level drops by one for every LEVEL_DECAY_MS without a new one. Blocks and levels live on the
-- service's clock: their values hold the time ("<level>:<until ms>:<reason>:<unverified>:<set at
-- ms>:<sends>:<approvals>:<threshold>", "<level>:<set at ms>"), compared with NOW; key TTLs only
-- collect garbage.
--
-- Counts, in one hash: sends and approvals by hour (s/v h:<hour>, the day), by 5 minutes (s/v
-- m:<5 min>, the hour) and by day (s/v d:<day>, the week: whether a prefix has a record of real
-- users), and the sends to unproven destinations and their approvals by hour (u/w h:<hour>).
-- Windows count committed sends only: ``check`` counts nothing but a reservation, ``commit``
-- counts the send once the verification and its SMS are written, so a burst of refused requests
-- never moves a window. Reservations (K.reservations, event ids by time) count against the threshold, so
-- requests in flight together can't all pass on the same window, but a refusal they cause is "in
-- flight, try again in a moment" and never a block; the caller releases (ZREM) a reservation whose
-- send isn't written, and one a crashed request left expires after 30 s.
--
-- A prefix scope also keeps its known-good numbers (K.known_good: keyed number hash → the time of its
-- last approval by a code), so one call tells whether the number was shown to be a real user's.
-- K.window the window hash  K.reservations the reservations  K.known_good known-good numbers (prefix scopes only).
-- A.action: check | commit | convert | unconvert, and its named fields (otp/core/pumping.py):
-- check:     daily_floor (0: no threshold, counts only), hourly_floor, ratio, enforce,
--            block_base_ms, block_max_ms, reservation ('' none), number_hash ('' none),
--            good_ms (how long an approval keeps a number known good), basis (all | unproven),
--            good_sends (sends a known-good number may have without approval)
-- commit:    reservation, unproven (a new verification's destination was unproven), resend,
--            number_hash (the prefix scope: one more send since the number's approval)
-- convert:   unproven (the approved sends' destination was), number_hash, good_ms,
--            sends (how many the approval converts: the verification's)
-- unconvert: unproven, hour, five, day (the buckets of the approval taken back), sends
-- check returns {verdict (1 allowed, 0 refused, 2 flagged but allowed), reason, retry after ms,
--   sends 24h, approvals 24h, sends 1h, approvals 1h, sends 7d, approvals 7d,
--   unproven sends 24h and their approvals, reservations in flight, 1 if the number is known good,
--   unproven sends and approvals of the last ~2 minutes};
-- convert returns {hour, 5-minute bucket, day} (for unconvert).
local action = A.action
local LEVEL_DECAY_MS = 6 * 3600000
local KEEP_MS = 8 * 86400000
local hour, five, day = math.floor(NOW / 3600000), math.floor(NOW / 300000), math.floor(NOW / 86400000)
local minute = math.floor(NOW / 60000)

local function total(names)
  local sum = 0
  for _, v in ipairs(redis.call('HMGET', K.window, unpack(names))) do sum = sum + (tonumber(v) or 0) end
  return sum
end

local function buckets(kind, width, last, count)
  local names = {}
  for b = last - count + 1, last do names[#names + 1] = kind .. width .. ':' .. b end
  return names
end

local function keep()
  redis.call('PEXPIRE', K.window, KEEP_MS)
  -- Prune buckets that left every window, so an active scope doesn't grow forever.
  if redis.call('HLEN', K.window) > 200 then
    for _, name in ipairs(redis.call('HKEYS', K.window)) do
      local width, bucket = string.match(name, '^[svuw]([hmdn]):(%d+)$')
      bucket = tonumber(bucket)
      if (width == 'h' and bucket <= hour - 25) or (width == 'm' and bucket <= five - 12)
          or (width == 'd' and bucket <= day - 8) or (width == 'n' and bucket <= minute - 3) then
        redis.call('HDEL', K.window, name)
      end
    end
  end
end

-- Sends and approvals count verifications (``s``: a new verification's first send; a resend is
-- bounded by the number's own limits), so one user resending never looks like pumping.
local function add(prefix, unproven, by)
  redis.call('HINCRBY', K.window, prefix .. 'h:' .. hour, by)
  redis.call('HINCRBY', K.window, prefix .. 'm:' .. five, by)
  redis.call('HINCRBY', K.window, prefix .. 'd:' .. day, by)
  if unproven then
    local kind = prefix == 's' and 'u' or 'w'
    redis.call('HINCRBY', K.window, kind .. 'h:' .. hour, 1)
    -- By the minute too: the budget counts settled sends only (see check).
    redis.call('HINCRBY', K.window, kind .. 'n:' .. minute, 1)
  end
end

if action == 'commit' then
  if A.reservation ~= '' then redis.call('ZREM', K.reservations, A.reservation) end
  if A.number_hash ~= '' and redis.call('HEXISTS', K.known_good, A.number_hash) == 1 then
    redis.call('HINCRBY', K.known_good, A.number_hash .. '#n', 1)
  end
  if A.resend then return {1} end  -- the windows count verifications
  add('s', A.unproven, 1)
  keep()
  return {1}
end
if action == 'convert' then
  add('v', A.unproven, tonumber(A.sends))
  keep()
  if A.number_hash ~= '' then
    redis.call('HSET', K.known_good, A.number_hash, NOW)
    redis.call('HDEL', K.known_good, A.number_hash .. '#n')
    redis.call('PEXPIRE', K.known_good, tonumber(A.good_ms))
  end
  return {hour, five, day}
end
if action == 'unconvert' then
  local by = -tonumber(A.sends)
  redis.call('HINCRBY', K.window, 'vh:' .. A.hour, by)
  redis.call('HINCRBY', K.window, 'vm:' .. A.five, by)
  redis.call('HINCRBY', K.window, 'vd:' .. A.day, by)
  if A.unproven then redis.call('HINCRBY', K.window, 'wh:' .. A.hour, -1) end
  return {1}
end

local daily_floor, hourly_floor, ratio = tonumber(A.daily_floor), tonumber(A.hourly_floor), tonumber(A.ratio)
local enforce, base, cap, reservation = A.enforce, tonumber(A.block_base_ms), tonumber(A.block_max_ms), A.reservation
local s24, v24 = total(buckets('s', 'h', hour, 24)), total(buckets('v', 'h', hour, 24))
local s1, v1 = total(buckets('s', 'm', five, 12)), total(buckets('v', 'm', five, 12))
local s7, v7 = total(buckets('s', 'd', day, 7)), total(buckets('v', 'd', day, 7))
-- The unproven counts by the minute too: the budgets allow for users of the last ~2 minutes who
-- may still be typing their code (otp/core/pumping.py).
local recent_u, recent_w = total(buckets('u', 'n', minute, 3)), total(buckets('w', 'n', minute, 3))
local u24, w24 = total(buckets('u', 'h', hour, 24)), total(buckets('w', 'h', hour, 24))
redis.call('ZREMRANGEBYSCORE', K.reservations, '-inf', NOW - 30000)
local in_flight = redis.call('ZCARD', K.reservations)
local good = 0
if A.number_hash ~= '' then
  local approved_at, since = unpack(redis.call('HMGET', K.known_good, A.number_hash, A.number_hash .. '#n'))
  approved_at = tonumber(approved_at or '')
  if approved_at and approved_at + tonumber(A.good_ms) > NOW and (tonumber(since) or 0) < tonumber(A.good_sends) then
    good = 1
  end
end
local counts = {s24, v24, s1, v1, s7, v7, u24, w24, in_flight, good, recent_u, recent_w}

local function reserve()
  if reservation ~= '' then
    redis.call('ZADD', K.reservations, NOW, reservation)
    redis.call('PEXPIRE', K.reservations, 60000)
  end
end

if daily_floor == 0 then
  reserve()
  return {1, '', 0, unpack(counts)}
end

local _, block_until = string.match(redis.call('GET', K.block) or '', '^(%d+):(%d+)')
local blocked_for = (tonumber(block_until) or 0) - NOW
if enforce and blocked_for > 0 then
  return {0, 'blocked', blocked_for, unpack(counts)}
end
local function over(pending)
  if A.basis == 'unproven' then
    -- Everything, the last minutes included: the threshold bounds bursts.
    -- Users of the last ~2 minutes may still be typing: at most 2 of them (plus as many as
    -- approved meanwhile) aren't counted yet, as in the budgets (otp/core/pumping.py).
    local typing = math.min(recent_u, 2 + recent_w)
    if math.max(0, u24 - w24 - typing) + pending + 1 > daily_floor + ratio * w24 then return 'unverified_daily' end
    return nil
  end
  if math.max(0, s1 - v1) + pending + 1 > hourly_floor + ratio * v1 then return 'unverified_hourly' end
  if math.max(0, s24 - v24) + pending + 1 > daily_floor + ratio * v24 then return 'unverified_daily' end
  return nil
end
local reason = over(0)
local verdict = 1
if reason then
  if enforce then
    -- Only enforcement escalates: a mode that records must change nothing enforcement reads.
    local last_level, last_at = string.match(redis.call('GET', K.level) or '', '^(%d+):(%d+)$')
    local decayed = math.floor((NOW - (tonumber(last_at) or NOW)) / LEVEL_DECAY_MS)
    local level = math.max(0, (tonumber(last_level) or 0) - decayed) + 1
    local duration = math.floor(math.min(cap, base * 2 ^ (level - 1)))
    -- The TTLs outlast what NOW can still read (a clock ahead of Redis's): garbage collection only.
    redis.call('SET', K.level, level .. ':' .. NOW, 'PX', LEVEL_DECAY_MS * (level + 1) + 86400000)
    -- Why, for readers (the dashboard): the rule, the unverified count that crossed it, when, and
    -- the counts behind it (sends, approvals, the threshold they were held to).
    local sends, approvals, floor = s24, v24, daily_floor
    if A.basis == 'unproven' then sends, approvals = u24, w24
    elseif reason == 'unverified_hourly' then sends, approvals, floor = s1, v1, hourly_floor end
    local unverified = math.max(0, sends - approvals)
    local threshold = string.format('%.1f', floor + ratio * approvals)
    redis.call('SET', K.block, table.concat({level, NOW + duration, reason, unverified, NOW, sends, approvals,
               threshold}, ':'), 'PX', duration + 86400000)
    return {0, reason, duration, unpack(counts)}
  end
  verdict = 2
end
if enforce and not reason and over(in_flight) then
  return {0, 'in_flight', 1000, unpack(counts)}
end
reserve()
return {verdict, reason or '', 0, unpack(counts)}
