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

-- Queues job `id` again, due now, with a fresh attempt count: its attempts
-- so far are kept and the base moves past them; a dead letter's reason and
-- a delivered job's end (and expiry) are cleared. Returns its lane, which
-- the caller rescores. Shared by replay and resend.
local function requeue(p, id, now)
  local jk, ak = p .. ':job:' .. id, p .. ':att:' .. id
  redis.call('HSET', jk, 'base', redis.call('LLEN', ak))
  redis.call('HDEL', jk, 'reason', 'dead_ms', 'done_ms')
  redis.call('PERSIST', jk)
  redis.call('PERSIST', ak)
  local lane = lane_of(p, id)
  redis.call('ZADD', p .. ':lane:' .. lane, now, id)
  return lane
end

-- The delivery log. {p}:hist:<bot> indexes a bot's deliveries by creation
-- ms; {p}:hist:<bot>:m:<message_id> and {p}:hist:<bot>:r:<recipient> the
-- same ids by message and recipient (they expire with the retention and may
-- hold ids already gone, which readers skip and drop). A delivered job is
-- kept (field done_ms) until its creation + retention.

-- Drops the log entries of `bot` created before now - keep, and the oldest
-- past `cap` entries, a thousand at most per call; a delivered job leaving
-- the log is deleted with its attempts (pending and dead ones stay).
local function trim_log(p, bot, now, keep, cap)
  local hk = p .. ':hist:' .. bot
  local gone = redis.call('ZRANGEBYSCORE', hk, '-inf', '(' .. (now - keep), 'LIMIT', 0, 1000)
  local over = redis.call('ZCARD', hk) - #gone - cap
  if over > 0 then
    gone = redis.call('ZRANGE', hk, 0, math.min(#gone + over, 1000) - 1)
  end
  for _, id in ipairs(gone) do
    redis.call('ZREM', hk, id)
    if redis.call('HEXISTS', p .. ':job:' .. id, 'done_ms') == 1 then
      redis.call('DEL', p .. ':job:' .. id, p .. ':att:' .. id)
    end
  end
end

-- Job `id` as the log shows it: {meta, body length, reason, dead_ms,
-- done_ms, attempts}, '' for what it lacks; nil if it is gone.
local function read_job(p, id)
  local jk = p .. ':job:' .. id
  local rec = redis.call('HMGET', jk, 'meta', 'reason', 'dead_ms', 'done_ms')
  if not rec[1] then
    return nil
  end
  return {rec[1], redis.call('HSTRLEN', jk, 'body'), rec[2] or '', rec[3] or '',
    rec[4] or '', redis.call('LRANGE', p .. ':att:' .. id, 0, -1)}
end
