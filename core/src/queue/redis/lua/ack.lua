-- Mark delivered jobs, each only if its lease (token) is still current:
-- record the attempt that succeeded, take the job out of its lane, and keep
-- it for the delivery log while its entry is there (see finish in
-- lanes.lua). Acks that come while one call is on its way share the next.
-- ARGV: prefix, now_ms, keep_ms, n, then per job: id, token, attempt_json
-- ('' = none).
-- Returns per job, in order: 1, 2 when its message's next delivery became
-- due (per-message order), or 0 for a stale lease.
local p, now, keep, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
local touched = {}
for k = 0, n - 1 do
  local id = ARGV[5 + 3 * k]
  local lane, ordered, bot = end_attempt(p, id, ARGV[6 + 3 * k], ARGV[7 + 3 * k])
  if not lane then
    out[k + 1] = 0
  else
    redis.call('ZREM', p .. ':lane:' .. lane, id)
    local promoted = ordered and advance(p, id, lane, true, now)
    finish(p, id, bot, now, keep, nil)
    touched[lane] = true
    out[k + 1] = promoted and 2 or 1
  end
end
for lane in pairs(touched) do
  rescore(p, lane, now)
end
return out
