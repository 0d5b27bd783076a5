-- Re-schedule a claimed job in one step: record the attempt (if any), set
-- the next due time and end the lease. Acts only for the current token.
-- ARGV: prefix, id, token, due_ms, attempt_json ('' = none), now_ms.
-- Returns 1 or 0.
local p, id = ARGV[1], ARGV[2]
local jk = p .. ':job:' .. id
if redis.call('HGET', jk, 'token') ~= ARGV[3] then
  return 0
end
if ARGV[5] ~= '' then
  redis.call('RPUSH', p .. ':att:' .. id, ARGV[5])
end
local lane = lane_of(p, id)
redis.call('ZADD', p .. ':lane:' .. lane, tonumber(ARGV[4]), id)
redis.call('HDEL', jk, 'token')
rescore(p, lane, tonumber(ARGV[6]))
return 1
