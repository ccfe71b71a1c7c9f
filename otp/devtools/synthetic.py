"""Synthetic audit traffic, for measuring the dashboard against a full log (bench and tests only).

One Lua call writes a batch of plausible entries to one partition's audit stream, with the hourly
counters ``audit()`` in ``lua/lib.lua`` would have incremented beside them, so a million events
take seconds rather than the hours the real API would need. The entries spread evenly over
``span_ms`` before ``now_ms`` (the ``ts`` field; stream ids are Redis's own clock, as always).
Never point this at a production Redis: it writes into the live keys.
"""

from __future__ import annotations

import functools

from otp.storage import keys as keyspace
from otp.storage.store import ScriptCall, Store, run_scripts

FILL_SCRIPT = r"""
-- KEYS[1] one partition's audit stream.  ARGV[1] entries  [2] ts of the first  [3] ms between
-- entries  [4] stream cap  [5] partition tag  [6] random seed
local n, first, step, cap, tag = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
math.randomseed(tonumber(ARGV[6]))
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
  local counter = tag .. 'agg:' .. math.floor(ts / 3600000)
  local name
  if r < 0.33 then
    name = 'started'
    fields[#fields + 1] = 'decision'; fields[#fields + 1] = 'allowed'
    redis.call('HINCRBY', counter, 'sent@prefix:' .. prefix, 1)
    redis.call('HINCRBY', counter, 'sent@country:' .. cc, 1)
  elseif r < 0.60 then
    name = 'approved'
    redis.call('HINCRBY', counter, 'approved@prefix:' .. prefix, 1)
    redis.call('HINCRBY', counter, 'approved@country:' .. cc, 1)
  elseif r < 0.78 then
    name = 'delivery'
    local status, code = 'delivered', ''
    local d = math.random()
    if d < 0.5 then status = 'sent' elseif d < 0.93 then status = 'delivered'
    elseif d < 0.98 then status, code = 'undelivered', '30003' else status, code = 'failed', '30008' end
    fields[#fields + 1] = 'status'; fields[#fields + 1] = status
    fields[#fields + 1] = 'error_code'; fields[#fields + 1] = code
    redis.call('HINCRBY', counter, 'delivery:' .. status .. ':' .. code, 1)
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
    redis.call('HINCRBY', counter, 'refused:' .. rule[1] .. ':' .. rule[2], 1)
  end
  if name ~= 'refused' and name ~= 'delivery' then redis.call('HINCRBY', counter, name, 1) end
  fields[#fields + 1] = 'event'; fields[#fields + 1] = name
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', cap, '*', unpack(fields))
  redis.call('PEXPIRE', counter, 8 * 86400000)
end
return n
"""

BATCH = 5000


async def fill(
    store: Store,
    total: int,
    *,
    now_ms: int,
    span_ms: int = 7 * 86_400_000,
    seed: int = 1,
    batch: int = BATCH,
) -> int:
    """Write ``total`` synthetic audit entries spread over the partitions and over ``span_ms``
    before ``now_ms``, oldest first; returns how many were written."""
    script = store.client.register_script(FILL_SCRIPT)
    per_partition = -(-total // store.partitions)
    step = max(1, span_ms // max(1, per_partition))
    first = now_ms - step * per_partition
    written = 0
    for offset in range(0, per_partition, batch):
        count = min(batch, per_partition - offset)
        calls: list[ScriptCall] = [
            (
                script,
                [keyspace.audit_stream(p)],
                [
                    count,
                    first + offset * step + p,
                    step,
                    store.audit_maxlen_per_partition,
                    keyspace.tag(p),
                    seed + p + offset,
                ],
            )
            for p in range(store.partitions)
        ]
        await store.guarded(functools.partial(run_scripts, store.client, calls))
        written += count * store.partitions
    return written
