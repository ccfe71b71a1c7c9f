-- Take the next slot of the sender whose queue frees up first, among the candidates of one message.
-- Each bucket (keys.sender_bucket) holds the time its sender is free for its next message: one
-- message every interval (segments / MPS), with no burst, which is how Twilio releases a sender's
-- queue anyway; pacing here keeps that queue where otp can see it and can still choose.
-- KEYS the candidates' buckets, in the pool's order (a tie goes to the earlier one).
-- A.now (ms); A.intervals[i] (ms the message occupies sender i); A.deadline (ms: a slot at or after
-- it is useless, the code has expired by then, so nothing is reserved).
-- Returns {index of the sender (0: none before the deadline), its slot in ms (>= now)}.
local A = cjson.decode(ARGV[1])
local now = tonumber(A.now)
local best, best_at = 0, nil
for i, key in ipairs(KEYS) do
  local free = tonumber(redis.call('GET', key) or '0')
  local at = math.max(now, free)
  if best_at == nil or at < best_at then best, best_at = i, at end
end
if best_at == nil or best_at >= tonumber(A.deadline) then return {0, best_at or now} end
local key = KEYS[best]
local next_free = best_at + tonumber(A.intervals[best])
redis.call('SET', key, next_free, 'PX', next_free - now + 1000)
return {best, best_at}
