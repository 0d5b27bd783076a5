-- Moves jobs from the single due set of versions before lanes ({p}:due)
-- into their lanes, keeping their due times. A no-op once done.
-- ARGV: prefix, now_ms. Returns how many jobs moved.
local p, now = ARGV[1], tonumber(ARGV[2])
local old = p .. ':due'
local rows = redis.call('ZRANGE', old, 0, -1, 'WITHSCORES')
local touched = {}
for i = 1, #rows, 2 do
  local id, due = rows[i], rows[i + 1]
  local lane = lane_of(p, id)
  if lane then
    redis.call('ZADD', p .. ':lane:' .. lane, due, id)
    touched[lane] = true
  end
end
redis.call('DEL', old)
for lane in pairs(touched) do
  rescore(p, lane, now)
end
return #rows / 2
