-- Where each lane stands: its pending jobs and the end of its hold.
-- ARGV: prefix, then lanes. Returns one {pending, hold_until_ms (0: none)}
-- per lane, in order.
local p = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local lane = ARGV[i]
  local hold = tonumber(redis.call('GET', p .. ':hold:' .. lane) or '0')
  table.insert(out, {redis.call('ZCARD', p .. ':lane:' .. lane), hold})
end
return out
