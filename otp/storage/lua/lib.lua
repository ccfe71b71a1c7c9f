-- Shared helpers, prepended to every script at load time, after the registry's prelude: the
-- script's KEYS by name (K), the delivery ranks generated from otp/delivery.py (DELIVERY_RANK,
-- FINAL) and the audit counters' lifetime from keys.py (AUDIT_COUNTER_TTL_MS).
-- ARGV[1] is one JSON object (A) with named fields; every script gets
--   A.now (ms, injected so tests control time), and scripts that write the audit log
--   A.cap (the audit stream cap for this partition), A.cap_ms (how long its entries are kept, ms;
--   absent: no age limit), A.audit (context: masked number, ip, key…).
-- The partition's keys (scripts.PARTITION_KEYS, built by keys.partition_script_keys) include
-- prefixes (K.verifications, K.numbers, K.failed, K.approving, K.jobs) to which a script appends
-- an id it read: every name comes from keys.py, and all of them name one cluster slot.
local A = cjson.decode(ARGV[1])
local NOW = tonumber(A.now)
local AUDIT_MAXLEN = A.cap
local AUDIT_RETENTION_MS = tonumber(A.cap_ms)
local AUDIT_CTX = A.audit or {}

-- Tallies of values a client chooses (the IP and prefix of a refusal) in hash ``key``: at most
-- ``cap`` distinct ones (their number in C.refused_tallies); one more past the cap counts only in
-- C.refused_untallied. Existing tallies go on counting. O(1) per tally (HGET, HEXISTS, HINCRBY).
local function count_chosen(key, cap, tallies)
  local held = tonumber(redis.call('HGET', key, C.refused_tallies) or '0')
  for _, tally in ipairs(tallies) do
    if held < cap or redis.call('HEXISTS', key, tally) == 1 then
      if redis.call('HINCRBY', key, tally, 1) == 1 then held = redis.call('HINCRBY', key, C.refused_tallies, 1) end
    else
      redis.call('HINCRBY', key, C.refused_untallied, 1)
    end
  end
end

-- Context names starting with "_" feed the counters only and are never written to the entry
-- (the destination prefix: beside the masked number's last digits it would spell the number).
local function audit(event, fields)
  local entry = {'ts', tostring(NOW), 'event', event}
  for k, v in pairs(AUDIT_CTX) do
    if string.sub(k, 1, 1) ~= '_' and (fields == nil or fields[k] == nil) then
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
  local id = redis.call('XADD', K.audit, 'MAXLEN', '~', AUDIT_MAXLEN, '*', unpack(entry))
  -- Kept by age too (OTP_AUDIT_RETENTION). XADD takes one of MAXLEN and MINID, so the age goes in
  -- an XTRIM. MINID compares stream ids, which Redis stamps from its own clock, not from A.now
  -- (the service's, which tests set weeks ahead): the cut is the new entry's id time minus the
  -- retention, so a service clock running ahead can't empty the log. '~' drops whole stream nodes
  -- only (up to 100 entries each), and one call at most 100 × stream-node-max-entries entries
  -- (10,000: Redis's default LIMIT with '~'): a backlog (a retention just lowered) drains a bounded
  -- step per event (measured ~0.3 ms), and otherwise the call only looks at the first node.
  if AUDIT_RETENTION_MS then
    local id_ms = tonumber(string.match(id, '^(%d+)'))
    redis.call('XTRIM', K.audit, 'MINID', '~', string.format('%d', id_ms - AUDIT_RETENTION_MS))
  end
  -- Hourly counters beside the stream, so dashboards add up hours instead of scanning events.
  local counter = K.counter
  local f = fields or {}
  local name = event
  if event == 'refused' then name = C.refused .. (f.rule or '') .. ':' .. (f.reason or '')
  elseif event == 'delivery' then name = C.delivery .. (f.status or '') .. ':' .. (f.error_code or '') end
  redis.call('HINCRBY', counter, name, 1)
  -- The same count per minute, for the dashboard's short windows (keys.MINUTE_COUNTER_TTL_MS).
  redis.call('HINCRBY', K.minute, name, 1)
  -- Verifications and approvals per destination, to rank prefixes and countries by unused codes.
  if (event == 'started' or event == 'approved') and AUDIT_CTX._prefix then
    local sent = event == 'started'
    local by_prefix = (sent and C.sent_prefix or C.approved_prefix) .. AUDIT_CTX._prefix
    local by_country = (sent and C.sent_country or C.approved_country) .. (AUDIT_CTX.country or '')
    redis.call('HINCRBY', counter, by_prefix, 1)
    redis.call('HINCRBY', counter, by_country, 1)
    redis.call('HINCRBY', K.minute, by_prefix, 1)
    redis.call('HINCRBY', K.minute, by_country, 1)
  end
  -- … and per source (the end user's IP, the API key or /v2 service), in their own hourly hash.
  if event == 'started' or event == 'approved' then
    local sent = event == 'started'
    local ip, key = f.ip or AUDIT_CTX.ip, f.key or AUDIT_CTX.key
    local names = {}
    if ip and ip ~= '' then names[#names + 1] = (sent and C.sent_ip or C.approved_ip) .. ip end
    if key and key ~= '' then names[#names + 1] = (sent and C.sent_key or C.approved_key) .. key end
    for _, tally in ipairs(names) do
      redis.call('HINCRBY', K.sources, tally, 1)
      redis.call('HINCRBY', K.minute, tally, 1)
    end
    if #names > 0 then redis.call('PEXPIRE', K.sources, AUDIT_COUNTER_TTL_MS) end
  end
  -- Refused attempts by destination, source and rule, for the Incidents view: an hourly hash of
  -- their own (small unless something is under attack) and the minute counters.
  -- Refusals are free for a client and an IP or a number is its choice, so the tallies by IP and
  -- prefix take at most REFUSAL_TALLIES_PER_HOUR / _PER_MINUTE distinct values per hash (counted
  -- in C.refused_tallies); a refusal of a new value past that counts as C.refused_untallied.
  if event == 'refused' then
    local ip, key = f.ip or AUDIT_CTX.ip, f.key or AUDIT_CTX.key
    local names = {C.refused_rule .. (f.rule or '')}
    local chosen = {}
    if AUDIT_CTX._prefix then
      chosen[#chosen + 1] = C.refused_prefix .. AUDIT_CTX._prefix
      names[#names + 1] = C.refused_country .. (AUDIT_CTX.country or '')
    end
    if ip and ip ~= '' then chosen[#chosen + 1] = C.refused_ip .. ip end
    if key and key ~= '' then names[#names + 1] = C.refused_key .. key end
    for _, tally in ipairs(names) do
      redis.call('HINCRBY', K.refusals, tally, 1)
      redis.call('HINCRBY', K.minute, tally, 1)
    end
    count_chosen(K.refusals, REFUSAL_TALLIES_PER_HOUR, chosen)
    count_chosen(K.minute, REFUSAL_TALLIES_PER_MINUTE, chosen)
    redis.call('PEXPIRE', K.refusals, AUDIT_COUNTER_TTL_MS)
  end
  if AUDIT_CTX.flagged then
    redis.call('HINCRBY', counter, C.flagged .. AUDIT_CTX.flagged, 1)
    redis.call('HINCRBY', K.minute, C.flagged .. AUDIT_CTX.flagged, 1)
  end
  redis.call('PEXPIRE', K.minute, MINUTE_COUNTER_TTL_MS)
  -- A start's estimated cost (_est, millionths; _bt the budget tenant): spent by a send, and
  -- blocked by the rule that refused one (otp.core.budget).
  local est = tonumber(AUDIT_CTX._est or '')
  if est and est > 0 then
    if event == 'refused' then
      redis.call('HINCRBY', counter, C.blocked_spend .. (f.rule or ''), est)
    elseif event == 'started' or event == 'resent' then
      redis.call('HINCRBY', counter, C.spend_country .. (AUDIT_CTX.country or ''), est)
      redis.call('HINCRBY', counter, C.spend_key .. (AUDIT_CTX._bt or ''), est)
    end
  end
  -- Twilio Lookup's part in a start (otp.core.line_types), once per start: not on an expiry the
  -- same step settles.
  if AUDIT_CTX.lookup and (event == 'started' or event == 'resent' or event == 'refused') then
    redis.call('HINCRBY', counter, C.lookup .. AUDIT_CTX.lookup, 1)
  end
  redis.call('PEXPIRE', counter, AUDIT_COUNTER_TTL_MS)
end

-- ``item`` added to a comma-separated list of distinct items, while it fits ``max_bytes`` (a
-- verification's hash keeps every value within 64 bytes, its compact encoding).
local function add_listed(list, item, max_bytes)
  if not item or item == '' then return list or '' end
  list = list or ''
  if string.find(',' .. list .. ',', ',' .. item .. ',', 1, true) then return list end
  local longer = list == '' and item or list .. ',' .. item
  if #longer > max_bytes then return list end
  return longer
end

-- Brute force, for the dashboard (otp/storage/locks.py): a lock seen now, by its member of
-- K.locks (keys.lock_index: 'v:<id>' a verification locked by its attempts, 'n:<id>' a check of
-- verification id refused because its number is locked by failed checks), with its details in
-- K.lock_details as JSON: first and last seen, how many times, the verification, the owner key, the
-- keys and IPs that checked (comma-separated, a few), and for a number until when it is locked.
-- Bounded: the newest LOCKS_KEPT per partition, none older than LOCKS_KEPT_MS.
local LOCKS_KEPT, LOCKS_KEPT_MS = 500, 8 * 86400000
local function note_lock(member, fields, ips, keys)
  local raw = redis.call('HGET', K.lock_details, member)
  local d = raw and cjson.decode(raw) or {first = NOW, n = 0, ips = '', keys = ''}
  d.last, d.n = NOW, d.n + 1
  for _, ip in ipairs(ips) do d.ips = add_listed(d.ips, ip, 200) end
  for _, key in ipairs(keys) do d.keys = add_listed(d.keys, key, 200) end
  for k, v in pairs(fields) do d[k] = v end
  redis.call('HSET', K.lock_details, member, cjson.encode(d))
  redis.call('ZADD', K.locks, NOW, member)
  local gone = redis.call('ZRANGEBYSCORE', K.locks, '-inf', NOW - LOCKS_KEPT_MS, 'LIMIT', 0, 100)
  local extra = redis.call('ZCARD', K.locks) - #gone - LOCKS_KEPT
  if extra > 0 then
    for _, m in ipairs(redis.call('ZRANGE', K.locks, #gone, #gone + extra - 1)) do gone[#gone + 1] = m end
  end
  if #gone > 0 then
    redis.call('ZREM', K.locks, unpack(gone))
    redis.call('HDEL', K.lock_details, unpack(gone))
  end
  redis.call('PEXPIRE', K.locks, LOCKS_KEPT_MS)
  redis.call('PEXPIRE', K.lock_details, LOCKS_KEPT_MS)
end

-- The names keys.py spells as verification(), number_state(), failed_checks(), approving_code().
local function vkey(id) return K.verifications .. id end
-- A verification's hash as its readers take it: the id is its key's, not a field (records written
-- before that also hold it; the pair given last wins, and it is the same).
local function record_of(key, id)
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    flat[#flat + 1] = 'id'
    flat[#flat + 1] = id
  end
  return flat
end
-- A number's state: per API key its pending verification (two tenants never resend each other's
-- codes), and its send log.
local function numkey(to) return K.numbers .. to end
-- A number's failed checks of the last hour, per API key: guesses spread over a tenant's
-- verifications are capped, and no tenant's guesses lock the number for another.
local function failedkey(owner, to) return K.failed .. owner .. ':' .. to end
-- Send n's SMS job, while queued: its sealed code (jc), how often it was claimed (jn) and the
-- sender slot it waits for (jp) are fields of the record (start.lua); the job hash holds the
-- send's own choices, when it makes any. Dropped when it is sent, fails, or can no longer be sent.
local function job_fields(n) return 'jc:' .. n, 'jn:' .. n, 'jp:' .. n end
local function drop_job(id, n)
  redis.call('HDEL', vkey(id), job_fields(n))
  local job_id = id .. ':' .. n
  redis.call('DEL', K.jobs .. job_id)
end
-- The code that approved a verification, for its replays.
local function approvingkey(id) return K.approving .. id end

-- A webhook event of verification `id`, due at `due` (ms), into the partition's event outbox: only
-- for a verification whose owner had webhooks when it started (ev on the record). The event sid is
-- derived from (verification, type, send), so emitting the same event twice stores it once and a
-- receiver can dedupe on it. No number is stored: the sender reads it from the verification.
-- A.evcap: how many events one fraud tenant may have queued in this partition; past it the oldest is
-- dropped (counted), so a dead endpoint can't grow Redis without bound. A.evlife: how long an event
-- may wait past its due time (the delivery loop's retry bound).
-- The names keys.py spells as event() and event_owner().
local function eventkey(eid) return K.event .. eid end
local function eventownerkey(owner) return K.event_owner .. owner end

-- The cap is the fraud tenant's (ft on the record: a /v2 account for all its services; else the
-- owner), so an account can't multiply its queue by creating services; 'q' on the event names it.
local function event_queue(eid, owner)
  return redis.call('HGET', eventkey(eid), 'q') or owner
end

local function emit_event(id, etype, n, due, error_code)
  local owner, on, tenant = unpack(redis.call('HMGET', vkey(id), 'key', 'ev', 'ft'))
  if on ~= '1' or not etype or not A.evcap then return end
  local queue = tenant or owner
  local eid = 'EV' .. string.sub(redis.sha1hex(id .. '|' .. etype .. '|' .. n), 1, 32)
  if redis.call('EXISTS', eventkey(eid)) == 1 then return end
  while redis.call('ZCARD', eventownerkey(queue)) >= A.evcap do
    local oldest = redis.call('ZPOPMIN', eventownerkey(queue))
    redis.call('DEL', eventkey(oldest[1]))
    redis.call('ZREM', K.events, oldest[1])
    redis.call('HINCRBY', K.counter, C.webhook_dropped .. 'queue_full', 1)
    redis.call('PEXPIRE', K.counter, AUDIT_COUNTER_TTL_MS)
  end
  local life = due - NOW + A.evlife
  redis.call('HSET', eventkey(eid), 't', etype, 'vid', id, 'n', n, 'at', NOW, 'ow', owner, 'ec', error_code or '')
  if queue ~= owner then redis.call('HSET', eventkey(eid), 'q', queue) end
  redis.call('PEXPIRE', eventkey(eid), life)
  redis.call('ZADD', K.events, due, eid)
  redis.call('ZADD', eventownerkey(queue), NOW, eid)
  if redis.call('PTTL', eventownerkey(queue)) < life then redis.call('PEXPIRE', eventownerkey(queue), life) end
end

local function base36(n)
  local digits, out = '0123456789abcdefghijklmnopqrstuvwxyz', ''
  n = math.floor(n)
  repeat
    local d = n % 36
    out = string.sub(digits, d + 1, d + 1) .. out
    n = math.floor(n / 36)
  until n == 0
  return out
end

-- Drops the code material (the h:<n> fields) and the number's pending pointer, and keeps the
-- record readable for the retention period.
local function finish(id, status, retention_ms, extra)
  local key = vkey(id)
  local to, owner, sends = unpack(redis.call('HMGET', key, 'to', 'key', 's'))
  redis.call('HSET', key, 'st', status, 'u', NOW)
  if extra then redis.call('HSET', key, unpack(extra)) end
  local hashes = {}
  -- With the code hashes go the sealed codes of SMS still queued (claim.lua drops their jobs).
  for i = 1, tonumber(sends) do
    hashes[#hashes + 1] = 'h:' .. i
    for _, f in ipairs({job_fields(i)}) do hashes[#hashes + 1] = f end
  end
  redis.call('HDEL', key, unpack(hashes))
  if redis.call('HGET', numkey(to), 'p:' .. owner) == id then redis.call('HDEL', numkey(to), 'p:' .. owner) end
  redis.call('PEXPIRE', key, retention_ms)
  -- In the same step as the change: an approval, cancel or lock is never committed without its
  -- event. Expiry is the exception: its event was scheduled at the start (event_claim.lua sends it
  -- if the verification is still pending, or expired, when it comes due).
  if status ~= 'expired' then emit_event(id, VERIFY_EVENT[status], 0, NOW) end
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

-- A send attempt lives in short fields of the verification hash, every value at most 64 bytes so
-- Redis keeps the hash in its compact encoding (one long value would make it several times larger):
--   sa:<n>  at|status|updated|error code|tries|segments|sent at  (times: ms after the creation)
--   sid:<n> the Message SID   pr:<n> price|unit   em:<n> error message   le:<n> last transient error
--   tl:<n>  the timeline: <state>=<ms after the attempt's time>,… the first time each TIMELINE
--           state was reached   dx:<n> <country>|<sender>|<opt-out scope> the send went to and from (the
--           worker's; the scope is the job's Messaging Service, "" for the operator's sender)
--   sn:<n> the pool's sender while dx doesn't name it   qw:<n> the expected wait for the sender's slot (ms)
local function split(text)
  local parts = {}
  for part in string.gmatch(text .. '|', '([^|]*)|') do parts[#parts + 1] = part end
  return parts
end

local function read_attempt(id, n)
  local c, raw, sid = unpack(redis.call('HMGET', vkey(id), 'c', 'sa:' .. n, 'sid:' .. n))
  if not raw then return nil end
  local p, base = split(raw), tonumber(c)
  return {at = base + tonumber(p[1]), status = p[2], updated = base + tonumber(p[3]), error_code = p[4],
          tries = p[5], segments = p[6], sent_at = p[7] ~= '' and base + tonumber(p[7]) or nil,
          message_sid = sid or nil}
end

local function offset(id, ms)
  if ms == nil or ms == '' then return '' end
  return tostring(tonumber(ms) - tonumber(redis.call('HGET', vkey(id), 'c')))
end

local function write_attempt(id, n, a)
  redis.call('HSET', vkey(id), 'sa:' .. n, table.concat({offset(id, a.at), a.status, offset(id, a.updated),
             a.error_code or '', a.tries or '', a.segments or '', offset(id, a.sent_at)}, '|'))
end

-- A send that reached a counted final state, per country and sender, and when delivered the time
-- it took (from its queueing) in the hourly counter's buckets: the dashboard's delivery rate and
-- p50/p95 read them. Bounded: countries and the operator's own senders.
local function count_delivery(id, n, attempt)
  local dx = redis.call('HGET', vkey(id), 'dx:' .. n)
  if not dx then return end
  local country, sender = string.match(dx, '^([^|]*)|([^|]*)')
  local counter = K.counter
  local status = attempt.status
  if country ~= '' then redis.call('HINCRBY', counter, C.country_delivery .. status .. ':' .. country, 1) end
  if sender ~= '' then redis.call('HINCRBY', counter, C.sender_delivery .. status .. ':' .. sender, 1) end
  if status == 'delivered' then
    local elapsed, bound = NOW - attempt.at, 'inf'
    for _, b in ipairs(TTD_BOUNDS_MS) do
      if elapsed <= b then bound = tostring(b) break end
    end
    if country ~= '' then redis.call('HINCRBY', counter, C.country_ttd .. country .. ':' .. bound, 1) end
    if sender ~= '' then redis.call('HINCRBY', counter, C.sender_ttd .. sender .. ':' .. bound, 1) end
  end
  redis.call('PEXPIRE', counter, AUDIT_COUNTER_TTL_MS)
end

-- The first time the attempt reached a TIMELINE state, as ms after the attempt's time.
local function mark_timeline(id, n, attempt)
  if not TIMELINE[attempt.status] then return end
  local key = vkey(id)
  local line = redis.call('HGET', key, 'tl:' .. n) or ''
  if string.find(',' .. line, ',' .. attempt.status .. '=', 1, true) then return end
  local entry = attempt.status .. '=' .. tostring(math.max(0, NOW - attempt.at))
  line = line == '' and entry or line .. ',' .. entry
  redis.call('HSET', key, 'tl:' .. n, string.sub(line, 1, 64))
end

local function update_attempt(id, n, changes)
  local attempt = read_attempt(id, n)
  if not attempt then return nil end
  local key = vkey(id)
  local moved = false
  -- Where the send went and from which sender (the worker says at the send), before counting it.
  -- dx holds the sender whole unless a long scope pushes it past 64 bytes: then the pool's sender
  -- (sn) needn't be kept beside it.
  local sender_in_dx = false
  if changes.country ~= nil and changes.country ~= cjson.null then
    local dx = changes.country .. '|' .. (changes.sender or '') .. '|' .. (changes.scope or '')
    local first = redis.call('HSET', key, 'dx:' .. n, string.sub(dx, 1, 64)) == 1
    sender_in_dx = #dx - #(changes.scope or '') <= 64
    -- Twilio's callback can overtake the worker's record of the send: a final state it brought
    -- before dx existed wasn't counted then, so it is now (once: dx is new only once).
    if first and COUNTED[attempt.status] then count_delivery(id, n, attempt) end
  end
  if changes.status then
    local old = DELIVERY_RANK[attempt.status] or 0
    local new = DELIVERY_RANK[changes.status] or 0
    if new > old then
      attempt.status = changes.status
      attempt.updated = NOW
      moved = true
      if changes.error_code then attempt.error_code = tostring(changes.error_code) end
      if changes.error_message then
        redis.call('HSET', key, 'em:' .. n, string.sub(changes.error_message, 1, 64))
      end
      emit_event(id, MESSAGE_EVENT[attempt.status], n, NOW, attempt.error_code)
      mark_timeline(id, n, attempt)
      if COUNTED[attempt.status] then count_delivery(id, n, attempt) end
    end
  end
  for _, name in ipairs({'segments', 'sent_at', 'tries'}) do
    if changes[name] ~= nil and changes[name] ~= cjson.null then attempt[name] = tostring(changes[name]) end
  end
  write_attempt(id, n, attempt)
  if changes.message_sid and changes.message_sid ~= cjson.null then
    redis.call('HSET', key, 'sid:' .. n, changes.message_sid)
  end
  if changes.price and changes.price ~= cjson.null then
    redis.call('HSET', key, 'pr:' .. n, changes.price .. '|' .. (changes.price_unit or ''))
  end
  -- The pool's sender it went (or waits to go) out with, and the expected wait for its slot.
  if changes.sender and changes.sender ~= cjson.null then
    if sender_in_dx then redis.call('HDEL', key, 'sn:' .. n)
    else redis.call('HSET', key, 'sn:' .. n, string.sub(changes.sender, 1, 64)) end
  end
  if changes.queued_ms and changes.queued_ms ~= cjson.null then
    redis.call('HSET', key, 'qw:' .. n, changes.queued_ms)
  end
  if changes.last_error and changes.last_error ~= cjson.null then
    redis.call('HSET', key, 'le:' .. n, string.sub(changes.last_error, 1, 64))
  end
  return moved, attempt.status, attempt
end

-- The number's own limits for one API key's start, with K.number the number's state
-- (keys.number_state): start.lua decides them in the same step as the send; number_gate.lua reads
-- them before the admission, so a start they refuse never holds a place in a limit or a budget a
-- concurrent start reads. ``limits``: StartArgs.number_limits. Returns {refused = true, …} (see
-- refuse_number), or the state the send builds on: the key's pending verification (existing, nil
-- for a new one), the number's sends over the last day (sent, oldest first) and their counts
-- (day, and hour for the last hour). Writes nothing but an expired pending verification's end.
local function number_verdict(key_id, limits, retention)
  local held = tonumber(redis.call('HGET', K.number, 'hd:' .. key_id) or '', 36)
  if held and held > NOW then return {refused = true, held = held - NOW} end
  local function refusal(id, rule, reason, retry, window, last_send)
    return {refused = true, id = id, rule = rule, reason = reason, retry = retry, window = window, last = last_send}
  end

  local existing = redis.call('HGET', K.number, 'p:' .. key_id)
  if existing and settle(existing, retention) ~= 'pending' then existing = nil end
  if existing then
    -- Out of check attempts (its last check may still be comparing): a resend there could never
    -- be approved, so the number gets a new verification instead.
    local a, ma = unpack(redis.call('HMGET', vkey(existing), 'a', 'ma'))
    if tonumber(a) >= tonumber(ma) then existing = nil end
  end
  if existing then
    local sends, cap, x = unpack(redis.call('HMGET', vkey(existing), 's', 'ms', 'x'))
    if tonumber(sends) >= tonumber(cap) then
      return refusal(existing, 'verification_sends', 'max_sends_reached', tonumber(x) - NOW)
    end
  end

  -- The number's sends over the last day, oldest first: ms times in base 36, so a few fit in one
  -- compact (at most 64-byte) hash value.
  local sent, last_hour = {}, {}
  for t in string.gmatch(redis.call('HGET', K.number, 's') or '', '%w+') do
    t = tonumber(t, 36)
    if t > NOW - 86400000 then sent[#sent + 1] = t end
    if t > NOW - 3600000 then last_hour[#last_hour + 1] = t end
  end
  local day, hour = #sent, #last_hour
  if not limits.safe then
    local per_day, per_hour, cooldown = limits.sends_per_day, limits.sends_per_hour, limits.cooldown_ms
    if day >= per_day then
      return refusal(existing, 'number_sends', 'number_daily_limit', sent[day - per_day + 1] + 86400000 - NOW,
                     86400000, sent[day])
    end
    if hour >= per_hour then
      return refusal(existing, 'number_sends', 'number_hourly_limit', last_hour[hour - per_hour + 1] + 3600000 - NOW,
                     3600000, last_hour[hour])
    end
    -- The cooldown doubles with each send to the number in the hour, but a verification's first
    -- resend is free: a user who presses Resend at once gets a code, as at Twilio. It still spaces
    -- the later resends, a new verification right after another, and any loop. Free also when the
    -- number had other sends earlier in the hour (a second sign-in), as long as this verification's
    -- one send is the number's latest: after another tenant's send in between it waits as a start.
    local steps = existing and hour - 1 or hour
    if existing and hour > 0 then
      local sends, created = unpack(redis.call('HMGET', vkey(existing), 's', 'c'))
      if tonumber(sends) == 1 and tonumber(created) == last_hour[hour] then steps = 0 end
    end
    if steps > 0 and cooldown > 0 then
      local last = last_hour[hour]
      local wait = cooldown * 2 ^ (math.min(steps, 16) - 1)
      if NOW - last < wait then
        return refusal(existing, 'resend_cooldown', 'resend_too_soon', math.floor(last + wait - NOW), 3600000, last)
      end
    end
  end
  return {existing = existing, sent = sent, day = day, hour = hour}
end

-- 1 when another API key's sends are behind a refusal of number_verdict's: its shared hold, or
-- a send by another key than ``key_id`` within the rule's window; else 0.
local function number_refusal_foreign(verdict, key_id)
  if verdict.held then return 1 end
  if not verdict.window then return 0 end
  local last_key, other = unpack(redis.call('HMGET', K.number, 'lk', 'ot'))
  local latest = nil
  if last_key and last_key ~= key_id then latest = verdict.last
  elseif other then latest = tonumber(other, 36) end
  if latest and latest > NOW - verdict.window then return 1 end
  return 0
end

-- A refusal of number_verdict's, audited (``decisions``: the admission's counts, '{}' before it)
-- and as start.lua returns it: {'refused', the verification, rule, reason, retry after ms, 1 if
-- another API key's sends were behind it}. Those sends are not revealed: the key is told a fixed
-- hold (hd:<key id>, ``hold_ms``) instead of when they were, so polling can't find out.
local function refuse_number(verdict, key_id, hold_ms, decisions)
  if verdict.held then
    audit('refused', {decision = 'refused', rule = 'number_sends', reason = 'shared_hold',
                      retry_after = math.ceil(verdict.held / 1000), counts = decisions})
    return {'refused', {}, 'number_sends', 'shared_hold', verdict.held, 1}
  end
  local id, retry = verdict.id, verdict.retry
  audit('refused', {vid = id or '', decision = 'refused', rule = verdict.rule, reason = verdict.reason,
                    retry_after = math.ceil(retry / 1000), counts = decisions})
  local foreign = number_refusal_foreign(verdict, key_id)
  if foreign == 1 then
    redis.call('HSET', K.number, 'hd:' .. key_id, base36(NOW + hold_ms))
    retry = hold_ms
  end
  return {'refused', id and record_of(vkey(id), id) or {}, verdict.rule, verdict.reason, retry, foreign}
end
