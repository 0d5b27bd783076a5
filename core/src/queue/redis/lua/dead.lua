-- Move a claimed job to its bot's dead letters in one step.
-- ARGV: prefix, id, token, now_ms, reason, attempt_json ('' = none). Returns 1 or 0.
local p, id = ARGV[1], ARGV[2]
local jk = p .. ':job:' .. id
if redis.call('HGET', jk, 'token') ~= ARGV[3] then
  return 0
end
if ARGV[6] ~= '' then
  redis.call('RPUSH', p .. ':att:' .. id, ARGV[6])
end
local bot = redis.call('HGET', jk, 'bot')
local lane = lane_of(p, id)
redis.call('ZREM', p .. ':lane:' .. lane, id)
redis.call('HSET', jk, 'reason', ARGV[5], 'dead_ms', ARGV[4])
redis.call('HDEL', jk, 'token')
redis.call('ZADD', p .. ':dead:' .. bot, tonumber(ARGV[4]), id)
rescore(p, lane, tonumber(ARGV[4]))
return 1
