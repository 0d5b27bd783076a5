-- Remove a delivered job, if the lease (token) is still current.
-- ARGV: prefix, id, token, now_ms. Returns 1, or 0 for a stale lease.
local p, id = ARGV[1], ARGV[2]
local jk = p .. ':job:' .. id
if redis.call('HGET', jk, 'token') ~= ARGV[3] then
  return 0
end
local lane = lane_of(p, id)
redis.call('ZREM', p .. ':lane:' .. lane, id)
redis.call('DEL', jk, p .. ':att:' .. id)
rescore(p, lane, tonumber(ARGV[4]))
return 1
