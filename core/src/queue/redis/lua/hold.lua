-- Set a lane aside until until_ms (never shortening a longer hold). The hold
-- key expires a minute after the hold ends, so holds clean up after
-- themselves; while it lasts, rescore() keeps the lane out of claims.
-- ARGV: prefix, lane, until_ms, now_ms.
local p, lane = ARGV[1], ARGV[2]
local until_ms, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local hk = p .. ':hold:' .. lane
if until_ms > tonumber(redis.call('GET', hk) or '0') then
  redis.call('SET', hk, until_ms)
  redis.call('PEXPIREAT', hk, until_ms + 60000)
end
rescore(p, lane, now)
return 1
