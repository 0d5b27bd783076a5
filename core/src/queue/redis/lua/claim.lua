-- Claim up to max due jobs: push each one's due time to now + lease and give
-- it a new fencing token. A job whose record vanished is dropped from the set.
-- ARGV: prefix, now_ms, lease_ms, max
-- Returns a list of {id, token, meta, body, attempts_in_this_cycle}.
local p = ARGV[1]
local now = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local due = p .. ':due'
local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  local jk = p .. ':job:' .. id
  local rec = redis.call('HMGET', jk, 'meta', 'body', 'base')
  if not rec[1] then
    redis.call('ZREM', due, id)
  else
    local token = redis.call('INCR', p .. ':seq')
    redis.call('ZADD', due, now + lease, id)
    redis.call('HSET', jk, 'token', token)
    local attempts = redis.call('LLEN', p .. ':att:' .. id) - tonumber(rec[3] or '0')
    table.insert(out, {id, token, rec[1], rec[2], attempts})
  end
end
return out
