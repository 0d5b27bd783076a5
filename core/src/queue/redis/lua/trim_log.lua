-- The delivery log's sweep: trims the logs of the bots given (see trim_log
-- in lanes.lua), so a bot that stops sending is trimmed all the same.
-- ARGV: prefix, now_ms, keep_ms, max_per_bot, then bots.
-- Returns how many entries left the logs.
local p, now, keep, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local gone = 0
for i = 5, #ARGV do
  gone = gone + trim_log(p, ARGV[i], now, keep, cap)
end
return gone
