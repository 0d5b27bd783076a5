-- Mark a delivered job, if the lease (token) is still current: record the
-- attempt that succeeded, take the job out of its lane, and keep it for the
-- delivery log while its entry is there (see finish in lanes.lua).
-- ARGV: prefix, id, token, now_ms, attempt_json ('' = none), keep_ms.
-- Returns 1, 2 when its message's next delivery became due (per-message
-- order), or 0 for a stale lease.
local p, id = ARGV[1], ARGV[2]
local lane, ordered, bot = end_attempt(p, id, ARGV[3], ARGV[5])
if not lane then
  return 0
end
local now, keep = tonumber(ARGV[4]), tonumber(ARGV[6])
redis.call('ZREM', p .. ':lane:' .. lane, id)
local promoted = ordered and advance(p, id, lane, true, now)
finish(p, id, bot, now, keep, nil)
rescore(p, lane, now)
if promoted then
  return 2
end
return 1
