-- One delivery of a bot, with its body.
-- ARGV: prefix, bot, id. Returns {record, body} (record as read_job gives
-- it), or false (nil) if the bot has no such delivery.
local p, bot, id = ARGV[1], ARGV[2], ARGV[3]
local jk = p .. ':job:' .. id
if redis.call('HGET', jk, 'bot') ~= bot then
  return false
end
local record = read_job(p, id)
if not record then
  return false
end
return {record, redis.call('HGET', jk, 'body')}
