-- Claim up to max due jobs, at most per_lane from each lane, lanes in the
-- order of their oldest due job: push each job's due time to now + lease and
-- give it a new fencing token. A job whose record vanished is dropped.
-- ARGV: prefix, now_ms, lease_ms, max, per_lane
-- Returns {jobs, next}: jobs a list of {id, token, meta, body,
-- attempts_in_this_cycle}; next the unix ms the earliest lane can next be
-- claimed from (-1 if none), so an idle worker knows how long to sleep
-- without asking again.
local p = ARGV[1]
local now = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local per_lane = tonumber(ARGV[5])
local lanes = redis.call('ZRANGEBYSCORE', p .. ':lanes', '-inf', now, 'LIMIT', 0, max)
local out = {}
for _, lane in ipairs(lanes) do
  local room = max - #out
  if room <= 0 then
    break
  end
  local lk = p .. ':lane:' .. lane
  local ids = redis.call('ZRANGEBYSCORE', lk, '-inf', now, 'LIMIT', 0, math.min(per_lane, room))
  for _, id in ipairs(ids) do
    local jk = p .. ':job:' .. id
    local rec = redis.call('HMGET', jk, 'meta', 'body', 'base')
    if not rec[1] then
      redis.call('ZREM', lk, id)
    else
      local token = redis.call('INCR', p .. ':seq')
      redis.call('ZADD', lk, now + lease, id)
      redis.call('HSET', jk, 'token', token)
      local attempts = redis.call('LLEN', p .. ':att:' .. id) - tonumber(rec[3] or '0')
      table.insert(out, {id, token, rec[1], rec[2], attempts})
    end
  end
  rescore(p, lane, now)
end
local first = redis.call('ZRANGE', p .. ':lanes', 0, 0, 'WITHSCORES')
local next = -1
if first[2] then
  next = tonumber(first[2])
end
return {out, next}
