-- Move a claimed job to its bot's dead letters in one step.
-- ARGV: prefix, id, token, now_ms, reason, attempt_json ('' = none).
-- Returns 1, 2 when its message's next delivery became due, or 0.
local p, id = ARGV[1], ARGV[2]
local lane, ordered, bot = end_attempt(p, id, ARGV[3], ARGV[6])
if not lane then
  return 0
end
local jk = p .. ':job:' .. id
redis.call('ZREM', p .. ':lane:' .. lane, id)
local promoted = ordered and advance(p, id, lane, false, tonumber(ARGV[4]))
redis.call('HSET', jk, 'reason', ARGV[5], 'dead_ms', ARGV[4])
redis.call('ZADD', p .. ':dead:' .. bot, tonumber(ARGV[4]), id)
rescore(p, lane, tonumber(ARGV[4]))
if promoted then
  return 2
end
return 1
