-- Queue dead letters again, due now, with a fresh attempt count (the base
-- moves past the attempts already recorded, which are kept).
-- ARGV: prefix, bot, now_ms, id ('' = all), origin (named in the wake-up).
-- Dead letters born dead (reason 'plugin failed: ...') have no body to send
-- and stay. Returns how many were replayed.
local p, bot, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local dead = p .. ':dead:' .. bot
local ids
if ARGV[4] == '' then
  ids = redis.call('ZRANGE', dead, 0, -1)
elseif redis.call('ZSCORE', dead, ARGV[4]) then
  ids = {ARGV[4]}
else
  ids = {}
end
local touched = {}
local replayed = 0
for _, id in ipairs(ids) do
  local jk = p .. ':job:' .. id
  local reason = redis.call('HGET', jk, 'reason') or ''
  if string.sub(reason, 1, 14) ~= 'plugin failed:' then
    replayed = replayed + 1
    redis.call('ZREM', dead, id)
    touched[requeue(p, id, now)] = true
  end
end
for lane in pairs(touched) do
  rescore(p, lane, now)
end
if replayed > 0 then
  wake_others(p, ARGV[5], now)
end
return replayed
