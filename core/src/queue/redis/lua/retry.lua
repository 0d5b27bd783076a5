-- Re-schedule a claimed job in one step: record the attempt (if any), set
-- the next due time and end the lease. Acts only for the current token.
-- ARGV: prefix, id, token, due_ms, attempt_json ('' = none), now_ms.
-- Returns 1 or 0.
local p, id = ARGV[1], ARGV[2]
local lane = end_attempt(p, id, ARGV[3], ARGV[5])
if not lane then
  return 0
end
redis.call('ZADD', p .. ':lane:' .. lane, tonumber(ARGV[4]), id)
rescore(p, lane, tonumber(ARGV[6]))
return 1
