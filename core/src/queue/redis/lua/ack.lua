-- Mark delivered jobs (see ack_job in lanes.lua): the acks that came while
-- the previous call was on its way, or waited for an enqueue in vain.
-- ARGV: prefix, now_ms, keep_ms, n, then per job: id, token, attempt_json
-- ('' = none).
-- Returns per job, in order: 1, 2 when its message's next delivery became
-- due (per-message order), or 0 for a stale lease.
local p, now, keep, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local changes = lane_changes()
local out = ack_jobs(p, 5, n, now, keep, changes)
lane_apply(p, changes, now)
return out
