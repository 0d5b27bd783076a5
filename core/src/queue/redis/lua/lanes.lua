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
-- Origins gone quiet are pruned by the heartbeats (wake.rs), not here: a
-- write should not pay for it, and a message to a dispatcher that died is
-- harmless.
local function wake_others(p, origin, now)
  for _, other in ipairs(redis.call('ZRANGE', p .. ':dispatchers', 0, -1)) do
    if other ~= origin then
      redis.call('PUBLISH', p .. ':wake:' .. other, '1')
    end
  end
end

-- Ends the lease of job `id` if `token` is still current, first recording
-- `attempt` (JSON; '' for none). Returns the job's lane, whether it is
-- ordered per message (its `ord` field) and its bot, or nil for a stale
-- lease (nothing changed). Shared by ack, retry and dead-letter; one HMGET
-- reads it all.
local function end_attempt(p, id, token, attempt)
  local jk = p .. ':job:' .. id
  local rec = redis.call('HMGET', jk, 'token', 'lane', 'ord', 'bot')
  if rec[1] ~= token then
    return nil
  end
  if attempt ~= '' then
    redis.call('RPUSH', p .. ':att:' .. id, attempt)
  end
  redis.call('HDEL', jk, 'token')
  return rec[2] or lane_of(p, id), rec[3] ~= false, rec[4]
end

-- Job `id` of `bot` is finished (delivered, or suppressed: `skip` is why):
-- kept for the delivery log while its entry is there (the log's trim
-- deletes it with the entry), deleted with its attempts otherwise (log off,
-- or its entry already trimmed).
local function finish(p, id, bot, now, keep, skip)
  local jk = p .. ':job:' .. id
  if keep > 0 and bot and redis.call('ZSCORE', p .. ':hist:' .. bot, id) then
    if skip then
      redis.call('HSET', jk, 'done_ms', now, 'skip', skip)
    else
      redis.call('HSET', jk, 'done_ms', now)
    end
  else
    redis.call('DEL', jk, p .. ':att:' .. id)
  end
end

-- The end of `lane`'s hold (unix ms, 0 for none).
local function hold_of(p, lane)
  return tonumber(redis.call('GET', p .. ':hold:' .. lane) or '0')
end

-- Re-scores `lane` in {p}:lanes after its jobs or its hold changed; `hold`
-- is its hold's end when the caller has read it already.
local function rescore(p, lane, now, hold)
  local first = redis.call('ZRANGE', p .. ':lane:' .. lane, 0, 0, 'WITHSCORES')
  if #first == 0 then
    -- A live hold stays (in its own key): jobs enqueued during it wait too.
    redis.call('ZREM', p .. ':lanes', lane)
    return
  end
  local score = tonumber(first[2])
  hold = hold or hold_of(p, lane)
  if hold > now and hold > score then
    score = hold
  end
  redis.call('ZADD', p .. ':lanes', score, lane)
end

-- Members given to one Redis command at most (unpack's stack limit).
local CHUNK = 500

-- Runs command `cmd` on `key` with `args` (flat), CHUNK at a time, in
-- `width`-sized groups (2 for score/member pairs).
local function chunked(cmd, key, args, width)
  local step = CHUNK * width
  for from = 1, #args, step do
    redis.call(cmd, key, unpack(args, from, math.min(from + step - 1, #args)))
  end
end

-- What one script changes in lanes, written together at its end: one ZREM
-- and one ZADD per lane instead of one per job, then one rescore per lane
-- (a script that moves many jobs of one lane paid a command per job for
-- each). The jobs a script removes and adds are never the same ones.
-- `holds` keeps each hold read, for the rescore.
local function lane_changes()
  return {adds = {}, removes = {}, touched = {}, holds = {}}
end

-- The list `map[key]`, made empty if there is none yet.
local function list_at(map, key)
  local list = map[key]
  if list == nil then
    list = {}
    map[key] = list
  end
  return list
end

-- Job `id` goes (back) into `lane`, due at `score`.
local function lane_add(changes, lane, score, id)
  local adds = list_at(changes.adds, lane)
  table.insert(adds, score)
  table.insert(adds, id)
  changes.touched[lane] = true
end

-- Job `id` leaves `lane`.
local function lane_remove(changes, lane, id)
  table.insert(list_at(changes.removes, lane), id)
  changes.touched[lane] = true
end

-- `lane` changed some other way (a job placed or promoted in it directly):
-- rescore it.
local function lane_touched(changes, lane)
  changes.touched[lane] = true
end

-- The end of `lane`'s hold, read once per script.
local function lane_hold(p, changes, lane)
  local hold = changes.holds[lane]
  if hold == nil then
    hold = hold_of(p, lane)
    changes.holds[lane] = hold
  end
  return hold
end

-- Writes the changes and rescores every lane they touched.
local function lane_apply(p, changes, now)
  for lane, ids in pairs(changes.removes) do
    chunked('ZREM', p .. ':lane:' .. lane, ids, 1)
  end
  for lane, pairs_ in pairs(changes.adds) do
    chunked('ZADD', p .. ':lane:' .. lane, pairs_, 2)
  end
  for lane in pairs(changes.touched) do
    rescore(p, lane, now, changes.holds[lane])
  end
end

-- Queues job `id` again, due now, with a fresh attempt count: its attempts
-- so far are kept and the base moves past them; a dead letter's reason and
-- a delivered job's end (and expiry) are cleared. Returns its lane, which
-- the caller rescores. Shared by replay and resend.
local function requeue(p, id, now)
  local jk, ak = p .. ':job:' .. id, p .. ':att:' .. id
  redis.call('HSET', jk, 'base', redis.call('LLEN', ak))
  -- An operator's replay or resend goes out as asked, outside the order of
  -- its message (`ord` gone), and a suppressed one is sent after all.
  redis.call('HDEL', jk, 'reason', 'dead_ms', 'done_ms', 'skip', 'ord')
  redis.call('PERSIST', jk)
  redis.call('PERSIST', ak)
  local lane = lane_of(p, id)
  redis.call('ZADD', p .. ':lane:' .. lane, now, id)
  return lane
end

-- The delivery log. {p}:hist:<bot> indexes a bot's deliveries by creation
-- ms; {p}:hist:<bot>:m:<message_id> and {p}:hist:<bot>:r:<recipient> the
-- same ids by message and recipient (the job keeps its message and
-- recipient in fields `m` and `r`, so its entries can be found again). A
-- delivered job is kept (field done_ms) while its entry is in the log. No
-- TTLs: entries, index entries and delivered jobs leave together when the
-- log is trimmed, on the bot's next enqueue or a dispatcher's periodic
-- sweep (`trim_log.lua`); readers never show what is past the retention.

-- Drops the log entries of `bot` created before now - keep, and the oldest
-- past `cap` entries, a thousand at most per call, with their message and
-- recipient entries; a delivered (or suppressed) job leaving the log is
-- deleted with its attempts (pending and dead ones stay). Returns how many
-- entries left.
local function trim_log(p, bot, now, keep, cap)
  local hk = p .. ':hist:' .. bot
  local gone = redis.call('ZRANGEBYSCORE', hk, '-inf', '(' .. (now - keep), 'LIMIT', 0, 1000)
  local over = redis.call('ZCARD', hk) - #gone - cap
  if over > 0 then
    gone = redis.call('ZRANGE', hk, 0, math.min(#gone + over, 1000) - 1)
  end
  for _, id in ipairs(gone) do
    local jk = p .. ':job:' .. id
    redis.call('ZREM', hk, id)
    local rec = redis.call('HMGET', jk, 'done_ms', 'm', 'r')
    if rec[2] then
      redis.call('ZREM', hk .. ':m:' .. rec[2], id)
    end
    if rec[3] then
      redis.call('ZREM', hk .. ':r:' .. rec[3], id)
    end
    if rec[1] then
      redis.call('DEL', jk, p .. ':att:' .. id)
    end
  end
  return #gone
end

-- Job `id` as the log shows it: {meta, body length, reason, dead_ms,
-- done_ms, attempts, skip (why it was suppressed)}, '' for what it lacks;
-- nil if it is gone.
local function read_job(p, id)
  local jk = p .. ':job:' .. id
  local rec = redis.call('HMGET', jk, 'meta', 'reason', 'dead_ms', 'done_ms', 'skip')
  if not rec[1] then
    return nil
  end
  return {rec[1], redis.call('HSTRLEN', jk, 'body'), rec[2] or '', rec[3] or '',
    rec[4] or '', redis.call('LRANGE', p .. ':att:' .. id, 0, -1), rec[5] or ''}
end

-- Per-message order. An ordered delivery (job fields `ord` = 'p', or 's'
-- to also suppress regressions; `msg`; `rank` in the message's lifecycle)
-- of message M in lane L is either M's head ({p}:msg:L:M field `head`: the
-- one in the lane, due, leased or waiting for a retry) or parked in
-- {p}:wait:L:M, scored by rank, out of the lane until its turn. Field `top`
-- is the highest rank delivered; `ttl` the dedup window, after which the
-- hash expires once M has no head (never while jobs wait behind one).

-- Places ordered job `id` of message `msg` in `lane` at `rank`: as the head
-- if M has none, or if the head is not leased and ranks later (it gives way
-- and waits); parked otherwise.
local function place_ordered(p, lane, msg, id, rank, now, ttl)
  local mk = p .. ':msg:' .. lane .. ':' .. msg
  local wk = p .. ':wait:' .. lane .. ':' .. msg
  local head = redis.call('HGET', mk, 'head')
  if head then
    local h = redis.call('HMGET', p .. ':job:' .. head, 'rank', 'token')
    if h[1] and (h[2] or rank >= tonumber(h[1])) then
      redis.call('ZADD', wk, rank, id)
      return
    end
    if h[1] then
      redis.call('ZREM', p .. ':lane:' .. lane, head)
      redis.call('ZADD', wk, tonumber(h[1]), head)
    end
    -- (A head whose record is gone is simply replaced.)
  end
  redis.call('HSET', mk, 'head', id, 'ttl', ttl)
  redis.call('PERSIST', mk)
  redis.call('ZADD', p .. ':lane:' .. lane, now, id)
end

-- Ordered job `id` of `lane` has left the lane, delivered or not: record
-- its rank if delivered, and if it was its message's head, the lowest
-- parked job of the message becomes the head, due now. Returns whether one
-- did.
local function advance(p, id, lane, delivered, now)
  local rec = redis.call('HMGET', p .. ':job:' .. id, 'ord', 'msg', 'rank')
  if not rec[1] then
    return false
  end
  local promoted = false
  local mk = p .. ':msg:' .. lane .. ':' .. rec[2]
  local rank = tonumber(rec[3])
  if delivered and rank > tonumber(redis.call('HGET', mk, 'top') or '-1') then
    redis.call('HSET', mk, 'top', rank)
  end
  if redis.call('HGET', mk, 'head') == id then
    local wk = p .. ':wait:' .. lane .. ':' .. rec[2]
    local nxt = redis.call('ZRANGE', wk, 0, 0)
    if #nxt == 0 then
      redis.call('HDEL', mk, 'head')
    else
      redis.call('ZREM', wk, nxt[1])
      redis.call('HSET', mk, 'head', nxt[1])
      redis.call('ZADD', p .. ':lane:' .. lane, now, nxt[1])
      promoted = true
    end
  end
  if redis.call('HEXISTS', mk, 'head') == 0 then
    redis.call('PEXPIRE', mk, tonumber(redis.call('HGET', mk, 'ttl') or '86400000'))
  end
  return promoted
end

-- Marks job `id` delivered if its lease (`token`) is still current: records
-- the attempt that succeeded (JSON, '' for none), takes the job out of its
-- lane (in `changes`, see lane_changes) and keeps it for the delivery log
-- while its entry is there (see finish). Returns 1, 2 when its message's
-- next delivery became due (per-message order), or 0 for a stale lease.
-- Shared by ack.lua and enqueue.lua (acks ride in an enqueue's script).
local function ack_job(p, id, token, attempt, now, keep, changes)
  local lane, ordered, bot = end_attempt(p, id, token, attempt)
  if not lane then
    return 0
  end
  lane_remove(changes, lane, id)
  local promoted = ordered and advance(p, id, lane, true, now)
  finish(p, id, bot, now, keep, nil)
  if promoted then
    return 2
  end
  return 1
end

-- Acks `n` jobs given as (id, token, attempt) triples in ARGV from `first`
-- on (see ack_job); returns their results, in order.
local function ack_jobs(p, first, n, now, keep, changes)
  local out = {}
  for k = 0, n - 1 do
    local at = first + 3 * k
    out[k + 1] = ack_job(p, ARGV[at], ARGV[at + 1], ARGV[at + 2], now, keep, changes)
  end
  return out
end
