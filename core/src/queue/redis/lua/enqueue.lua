-- Enqueue a batch atomically: dedup marks and deliveries, all or nothing.
-- ARGV: prefix, now_ms, dedup_ttl_ms, origin (who to name in the wake-up),
--   keep_ms (the delivery log's retention; 0 = no log), max_per_bot,
--   lease_ms, take, per_lane (the hand-off: see below), n_events, then per
--   event:
--   bot, event_id, n_deliveries, then per delivery: id, lane, meta, body,
--   dead_reason ('' = pending), message_id, recipient ('' = none),
--   created_ms (the delivery log's time for it), order ('' = none, 'p'
--   per message, 's' per message suppressing regressions; only given with a
--   message_id), rank (in the message's lifecycle); then n_acks and per
--   ack: id, token, attempt_json (acks riding in this call: see ack_job).
-- Hand-off: up to `take` new deliveries (at most per_lane of one lane) are
-- leased to the writing dispatcher at once, as claim.lua would lease them,
-- when a claim now would take them first: nothing in this shard is due, the
-- lane is not held, and the delivery does not wait behind its message.
-- Returns {flags, leased, queued, acked}: one flag per event, in order (1
-- accepted, 0 duplicate); id and token of each leased delivery, flat; how
-- many pending deliveries were left for a claim; each ack's result.
local p = ARGV[1]
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local origin = ARGV[4]
local keep = tonumber(ARGV[5])
local cap = tonumber(ARGV[6])
local lease = tonumber(ARGV[7])
local take = tonumber(ARGV[8])
local per_lane = tonumber(ARGV[9])
local n_events = tonumber(ARGV[10])
local i = 11
local accepted = 0
local flags = {}
local changes = lane_changes()
-- Per bot with the log on: its new entries (created ms, id, flat), one ZADD.
local logged = {}
local leased, handed, queued, per = {}, 0, 0, {}
if take > 0 and #redis.call('ZRANGEBYSCORE', p .. ':lanes', '-inf', now, 'LIMIT', 0, 1) > 0 then
  take = 0
end

-- Whether a new delivery of `lane` may be handed off.
local function may_hand_off(lane)
  if handed >= take then
    return false
  end
  if per[lane] == nil then
    per[lane] = lane_hold(p, changes, lane) > now and per_lane or 0
  end
  return per[lane] < per_lane
end
for _ = 1, n_events do
  local bot, eid, nd = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  -- The mark holds when it ends on the dispatcher's clock (the one every
  -- other time here comes from); Redis's own expiry only clears it away.
  local dk = p .. ':dedup:' .. bot .. ':' .. eid
  local fresh = redis.call('SET', dk, now + ttl, 'PX', ttl, 'NX')
  if not fresh then
    local ends = tonumber(redis.call('GET', dk))
    -- A mark written before marks held their end ('1') is left to its TTL.
    if ends ~= nil and ends > 1 and ends <= now then
      redis.call('SET', dk, now + ttl, 'PX', ttl)
      fresh = true
    end
  end
  if fresh then
    accepted = accepted + 1
    table.insert(flags, 1)
    for _ = 1, nd do
      local id, meta, body, dead = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
      local lane, msg, to, created = ARGV[i + 1], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
      local order, rank = ARGV[i + 8], tonumber(ARGV[i + 9])
      local jk = p .. ':job:' .. id
      -- With the log on, the job keeps its message and recipient so that
      -- trimming finds its index entries again (same command, no extra).
      local fields = {'meta', meta, 'body', body, 'bot', bot, 'lane', lane}
      if keep > 0 and msg ~= '' then
        table.insert(fields, 'm')
        table.insert(fields, msg)
      end
      if keep > 0 and to ~= '' then
        table.insert(fields, 'r')
        table.insert(fields, to)
      end
      if dead == '' and order ~= '' then
        table.insert(fields, 'ord')
        table.insert(fields, order)
        table.insert(fields, 'msg')
        table.insert(fields, msg)
        table.insert(fields, 'rank')
        table.insert(fields, rank)
        redis.call('HSET', jk, unpack(fields))
        place_ordered(p, lane, msg, id, rank, now, ttl)
        lane_touched(changes, lane)
        queued = queued + 1
      elseif dead == '' and may_hand_off(lane) then
        local token = redis.call('INCR', p .. ':seq')
        table.insert(fields, 'token')
        table.insert(fields, token)
        redis.call('HSET', jk, unpack(fields))
        lane_add(changes, lane, now + lease, id)
        per[lane] = per[lane] + 1
        handed = handed + 1
        table.insert(leased, id)
        table.insert(leased, token)
      elseif dead == '' then
        redis.call('HSET', jk, unpack(fields))
        lane_add(changes, lane, now, id)
        queued = queued + 1
      else
        table.insert(fields, 'reason')
        table.insert(fields, dead)
        table.insert(fields, 'dead_ms')
        table.insert(fields, now)
        redis.call('HSET', jk, unpack(fields))
        redis.call('ZADD', p .. ':dead:' .. bot, now, id)
      end
      if keep > 0 then
        local hk = p .. ':hist:' .. bot
        local entries = list_at(logged, bot)
        table.insert(entries, created)
        table.insert(entries, id)
        if msg ~= '' then
          redis.call('ZADD', hk .. ':m:' .. msg, created, id)
        end
        if to ~= '' then
          redis.call('ZADD', hk .. ':r:' .. to, created, id)
        end
      end
      i = i + 10
    end
  else
    table.insert(flags, 0)
    i = i + 10 * nd
  end
end
local acked = ack_jobs(p, i + 1, tonumber(ARGV[i]), now, keep, changes)
lane_apply(p, changes, now)
for bot, entries in pairs(logged) do
  chunked('ZADD', p .. ':hist:' .. bot, entries, 2)
  trim_log(p, bot, now, keep, cap)
end
-- Others can only claim what was not handed off.
if queued > 0 then
  wake_others(p, origin, now)
end
return {flags, leased, queued, acked}
