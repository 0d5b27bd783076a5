-- List a bot's newest dead letters.
-- ARGV: prefix, bot, limit. Returns a list of {id, meta, body_len, reason, dead_ms, attempts[]}.
local p = ARGV[1]
local ids = redis.call('ZREVRANGE', p .. ':dead:' .. ARGV[2], 0, tonumber(ARGV[3]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local jk = p .. ':job:' .. id
  local rec = redis.call('HMGET', jk, 'meta', 'reason', 'dead_ms')
  if rec[1] then
    local len = redis.call('HSTRLEN', jk, 'body')
    local attempts = redis.call('LRANGE', p .. ':att:' .. id, 0, -1)
    table.insert(out, {id, rec[1], len, rec[2] or '', rec[3] or '0', attempts})
  end
end
return out
