-- Claim up to max due jobs, at most per_lane from each lane, lanes in the
-- order of their oldest due job: push each job's due time to now + lease and
-- give it a new fencing token. A job whose record vanished is dropped.
-- A job of a webhook that suppresses regressions whose status ranks below
-- one already delivered for its message is not handed out: it ends as
-- suppressed (kept for the log like a delivered one) and its message's next
-- job moves up.
-- ARGV: prefix, now_ms, lease_ms, max, per_lane, keep_ms (the log's
-- retention, 0 = none), suppressed_reason.
-- Returns {jobs, next, suppressed}: jobs a list of {id, token, meta, body,
-- attempts_in_this_cycle}; next the unix ms the earliest lane can next be
-- claimed from (-1 if none), so an idle worker knows how long to sleep
-- without asking again; suppressed the lane of each suppressed job.
local p = ARGV[1]
local now = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local per_lane = tonumber(ARGV[5])
local keep = tonumber(ARGV[6])
local suppressed_reason = ARGV[7]
local suppressed = {}

-- Whether job `jk` (fields ord, msg, rank) is a regression to suppress.
local function regresses(lane, rec)
  if rec[4] ~= 's' then
    return false
  end
  local top = redis.call('HGET', p .. ':msg:' .. lane .. ':' .. rec[5], 'top')
  return top ~= false and tonumber(rec[6]) < tonumber(top)
end

local lanes = redis.call('ZRANGEBYSCORE', p .. ':lanes', '-inf', now, 'LIMIT', 0, max)
local changes = lane_changes()
-- First the jobs to lease, lane by lane (records read once); then one
-- INCRBY for all their tokens and one ZADD per lane for their leases.
local picked = {}
for _, lane in ipairs(lanes) do
  local room = max - #picked
  if room <= 0 then
    break
  end
  local lk = p .. ':lane:' .. lane
  local ids = redis.call('ZRANGEBYSCORE', lk, '-inf', now, 'LIMIT', 0, math.min(per_lane, room))
  for _, id in ipairs(ids) do
    local jk = p .. ':job:' .. id
    local rec = redis.call('HMGET', jk, 'meta', 'body', 'base', 'ord', 'msg', 'rank')
    if not rec[1] then
      lane_remove(changes, lane, id)
    elseif regresses(lane, rec) then
      lane_remove(changes, lane, id)
      advance(p, id, lane, false, now)
      finish(p, id, redis.call('HGET', jk, 'bot'), now, keep, suppressed_reason)
      table.insert(suppressed, lane)
    else
      table.insert(picked, {id, lane, rec})
    end
  end
  lane_touched(changes, lane)
end
local out = {}
if #picked > 0 then
  local last = redis.call('INCRBY', p .. ':seq', #picked)
  local lease_end = now + lease
  for k, job in ipairs(picked) do
    local id, lane, rec = job[1], job[2], job[3]
    local token = last - #picked + k
    lane_add(changes, lane, lease_end, id)
    redis.call('HSET', p .. ':job:' .. id, 'token', token)
    local attempts = redis.call('LLEN', p .. ':att:' .. id) - tonumber(rec[3] or '0')
    table.insert(out, {id, token, rec[1], rec[2], attempts})
  end
end
lane_apply(p, changes, now)
local first = redis.call('ZRANGE', p .. ':lanes', 0, 0, 'WITHSCORES')
local next = -1
if first[2] then
  next = tonumber(first[2])
end
return {out, next, suppressed}
