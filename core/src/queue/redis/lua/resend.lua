-- Send a delivered or dead delivery of a bot again (see requeue).
-- ARGV: prefix, bot, id, now_ms, origin (named in the wake-up).
-- Returns 'queued', 'pending' (it is still queued), 'nothing_to_send' (its
-- plugin failed) or 'not_found'.
local p, bot, id, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local jk = p .. ':job:' .. id
if redis.call('HGET', jk, 'bot') ~= bot then
  return 'not_found'
end
local reason = redis.call('HGET', jk, 'reason')
if reason then
  if string.sub(reason, 1, 14) == 'plugin failed:' then
    return 'nothing_to_send'
  end
  redis.call('ZREM', p .. ':dead:' .. bot, id)
elseif redis.call('HEXISTS', jk, 'done_ms') == 0 then
  return 'pending'
end
rescore(p, requeue(p, id, now), now)
wake_others(p, ARGV[5], now)
return 'queued'
