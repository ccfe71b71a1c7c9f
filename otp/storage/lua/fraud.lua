-- The SMS-pumping windows of one scope (a number prefix, a range, a country, an end-user IP of a
-- tenant, a tenant), and its block. The Policy reads several scopes in one round trip and decides
-- (otp/policy.py); this script keeps each scope's counts atomic and applies the scope's own
-- threshold, after authgear's published rule: unverified sends (sends − approvals) in a sliding
-- day and hour may not exceed  daily = daily floor + ratio × approvals in the day  and
--                              hourly = hourly floor + ratio × approvals in the hour
-- (added, not the larger of the two as authgear has it: a real prefix's unlucky day, 2 in 3
-- approved, stays clear, and a pumped one with no approvals has the floor). A range or a country
-- judges its sends to unproven prefixes only (basis "unproven", the day): the only ones it refuses.
-- Crossing either (on committed sends) blocks the scope for a while that doubles with each block;
-- the level drops by one for every LEVEL_DECAY_MS without a new one. Blocks and levels live on the
-- service's clock: their values hold the time ("<level>:<until ms>:<reason>:<unverified>",
-- "<level>:<set at ms>"), compared with NOW; key TTLs only collect garbage.
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
-- ARGV[2] action: check | commit | convert | unconvert
-- check:     [3] daily floor (0: no threshold, counts only) [4] hourly floor [5] ratio [6] enforce 1|0
--            [7] block base ms [8] block max ms [9] reservation id ('' none)
--            [10] number hash ('' none) [11] how long an approval keeps a number known good (ms)
--            [12] basis: all | unproven  [13] sends a known-good number may have without approval
-- commit, for the prefix scope, also takes [5] the number's hash: one more send since its approval
-- commit:    [3] reservation id [4] '1' if a new verification's destination was unproven
-- convert:   [3] '1' if the approved sends' destination was unproven  [4] number hash ('' none)
--            [5] known-good lifetime ms  [6] how many sends the approval converts (the verification's)
-- unconvert: [3] '1' likewise  [4] hour  [5] 5-minute bucket  [6] day (of the approval taken back)
--            [7] how many
-- check returns {verdict (1 allowed, 0 refused, 2 flagged but allowed), reason, retry after ms,
--   sends 24h, approvals 24h, sends 1h, approvals 1h, sends 7d, approvals 7d,
--   unproven sends 24h and their approvals, reservations in flight, 1 if the number is known good,
--   unproven sends and approvals of the last ~2 minutes};
-- convert returns {hour, 5-minute bucket, day} (for unconvert).
local action = ARGV[2]
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
  if ARGV[3] ~= '' then redis.call('ZREM', K.reservations, ARGV[3]) end
  if ARGV[5] and ARGV[5] ~= '' and redis.call('HEXISTS', K.known_good, ARGV[5]) == 1 then
    redis.call('HINCRBY', K.known_good, ARGV[5] .. '#n', 1)
  end
  if ARGV[6] == 'resend' then return {1} end  -- the windows count verifications
  add('s', ARGV[4] == '1', 1)
  keep()
  return {1}
end
if action == 'convert' then
  add('v', ARGV[3] == '1', tonumber(ARGV[6]))
  keep()
  if ARGV[4] ~= '' then
    redis.call('HSET', K.known_good, ARGV[4], NOW)
    redis.call('HDEL', K.known_good, ARGV[4] .. '#n')
    redis.call('PEXPIRE', K.known_good, tonumber(ARGV[5]))
  end
  return {hour, five, day}
end
if action == 'unconvert' then
  local by = -tonumber(ARGV[7])
  redis.call('HINCRBY', K.window, 'vh:' .. ARGV[4], by)
  redis.call('HINCRBY', K.window, 'vm:' .. ARGV[5], by)
  redis.call('HINCRBY', K.window, 'vd:' .. ARGV[6], by)
  if ARGV[3] == '1' then redis.call('HINCRBY', K.window, 'wh:' .. ARGV[4], -1) end
  return {1}
end

local daily_floor, hourly_floor, ratio = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local enforce, base, cap, reservation = ARGV[6] == '1', tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local s24, v24 = total(buckets('s', 'h', hour, 24)), total(buckets('v', 'h', hour, 24))
local s1, v1 = total(buckets('s', 'm', five, 12)), total(buckets('v', 'm', five, 12))
local s7, v7 = total(buckets('s', 'd', day, 7)), total(buckets('v', 'd', day, 7))
-- The unproven counts by the minute too: the budgets allow for users of the last ~2 minutes who
-- may still be typing their code (otp/pumping.py).
local recent_u, recent_w = total(buckets('u', 'n', minute, 3)), total(buckets('w', 'n', minute, 3))
local u24, w24 = total(buckets('u', 'h', hour, 24)), total(buckets('w', 'h', hour, 24))
redis.call('ZREMRANGEBYSCORE', K.reservations, '-inf', NOW - 30000)
local in_flight = redis.call('ZCARD', K.reservations)
local good = 0
if ARGV[10] ~= '' then
  local approved_at, since = unpack(redis.call('HMGET', K.known_good, ARGV[10], ARGV[10] .. '#n'))
  approved_at = tonumber(approved_at or '')
  if approved_at and approved_at + tonumber(ARGV[11]) > NOW and (tonumber(since) or 0) < tonumber(ARGV[13]) then
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
  if ARGV[12] == 'unproven' then
    -- Everything, the last minutes included: the threshold bounds bursts.
    -- Users of the last ~2 minutes may still be typing: at most 2 of them (plus as many as
    -- approved meanwhile) aren't counted yet, as in the budgets (otp/pumping.py).
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
    -- Why, for readers (the dashboard): the rule and the unverified count that crossed it.
    local unverified = ARGV[12] == 'unproven' and math.max(0, u24 - w24) or math.max(0, s24 - v24)
    if reason == 'unverified_hourly' then unverified = math.max(0, s1 - v1) end
    redis.call('SET', K.block, level .. ':' .. (NOW + duration) .. ':' .. reason .. ':' .. unverified,
               'PX', duration + 86400000)
    return {0, reason, duration, unpack(counts)}
  end
  verdict = 2
end
if enforce and not reason and over(in_flight) then
  return {0, 'in_flight', 1000, unpack(counts)}
end
reserve()
return {verdict, reason or '', 0, unpack(counts)}
