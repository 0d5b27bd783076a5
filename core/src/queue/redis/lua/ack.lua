-- Mark a delivered job, if the lease (token) is still current: record the
-- attempt that succeeded, take the job out of its lane, and keep it in the
-- delivery log until its creation + keep_ms (or delete it now: log off, or
-- already past its retention).
-- ARGV: prefix, id, token, now_ms, attempt_json ('' = none), keep_ms.
-- Returns 1, or 0 for a stale lease.
local p, id = ARGV[1], ARGV[2]
local lane = end_attempt(p, id, ARGV[3], ARGV[5])
if not lane then
  return 0
end
local now, keep = tonumber(ARGV[4]), tonumber(ARGV[6])
local jk, ak = p .. ':job:' .. id, p .. ':att:' .. id
redis.call('ZREM', p .. ':lane:' .. lane, id)
local created = nil
if keep > 0 then
  created = redis.call('ZSCORE', p .. ':hist:' .. redis.call('HGET', jk, 'bot'), id)
end
local left = created and (tonumber(created) + keep - now) or 0
if left > 0 then
  redis.call('HSET', jk, 'done_ms', now)
  redis.call('PEXPIRE', jk, left)
  redis.call('PEXPIRE', ak, left)
else
  redis.call('DEL', jk, ak)
end
rescore(p, lane, now)
return 1
