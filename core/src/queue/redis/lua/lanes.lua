-- Lanes: prepended to every script that moves jobs (one copy of this logic).
-- A lane L (one per webhook, `<bot>/<webhook>`) is the sorted set
-- {p}:lane:L of its pending job ids scored by due ms (leased jobs by the end
-- of their lease). {p}:lanes scores each non-empty lane by when it can next
-- be claimed from: its earliest job's due time, or the end of its hold
-- ({p}:hold:L, unix ms), whichever is later.

-- The lane of job `id`, or nil if the job is gone. A job written before
-- lanes existed has no `lane` field; its metadata names bot and webhook.
local function lane_of(p, id)
  local jk = p .. ':job:' .. id
  local lane = redis.call('HGET', jk, 'lane')
  if lane then
    return lane
  end
  local meta = redis.call('HGET', jk, 'meta')
  if not meta then
    return nil
  end
  local m = cjson.decode(meta)
  lane = m.bot .. '/' .. m.webhook
  redis.call('HSET', jk, 'lane', lane)
  return lane
end

-- Wakes the other live dispatchers (each listens on {p}:wake:<origin> and
-- keeps its origin in {p}:dispatchers, scored by its last heartbeat), not
-- `origin`, which woke its own workers when it wrote. One dispatcher alone
-- publishes nothing.
local function wake_others(p, origin, now)
  local set = p .. ':dispatchers'
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now - 30000)
  for _, other in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    if other ~= origin then
      redis.call('PUBLISH', p .. ':wake:' .. other, '1')
    end
  end
end

-- Ends the lease of job `id` if `token` is still current, first recording
-- `attempt` (JSON; '' for none). Returns the job's lane, or nil for a stale
-- lease (nothing changed). Shared by retry and dead-letter.
local function end_attempt(p, id, token, attempt)
  local jk = p .. ':job:' .. id
  if redis.call('HGET', jk, 'token') ~= token then
    return nil
  end
  if attempt ~= '' then
    redis.call('RPUSH', p .. ':att:' .. id, attempt)
  end
  redis.call('HDEL', jk, 'token')
  return lane_of(p, id)
end

-- Re-scores `lane` in {p}:lanes after its jobs or its hold changed.
local function rescore(p, lane, now)
  local first = redis.call('ZRANGE', p .. ':lane:' .. lane, 0, 0, 'WITHSCORES')
  if #first == 0 then
    -- A live hold stays (in its own key): jobs enqueued during it wait too.
    redis.call('ZREM', p .. ':lanes', lane)
    return
  end
  local score = tonumber(first[2])
  local hold = tonumber(redis.call('GET', p .. ':hold:' .. lane) or '0')
  if hold > now and hold > score then
    score = hold
  end
  redis.call('ZADD', p .. ':lanes', score, lane)
end
