-- Pending jobs (due, scheduled or leased) across lanes, and how many of
-- them are due now in lanes that are not held.
-- ARGV: prefix, now_ms. Returns {pending, due}.
local p, now = ARGV[1], tonumber(ARGV[2])
local pending, due = 0, 0
for _, lane in ipairs(redis.call('ZRANGE', p .. ':lanes', 0, -1)) do
  pending = pending + redis.call('ZCARD', p .. ':lane:' .. lane)
end
for _, lane in ipairs(redis.call('ZRANGEBYSCORE', p .. ':lanes', '-inf', now)) do
  due = due + redis.call('ZCOUNT', p .. ':lane:' .. lane, '-inf', now)
end
return {pending, due}
