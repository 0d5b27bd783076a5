-- Mark a delivered job, if the lease (token) is still current: record the
-- attempt that succeeded, take the job out of its lane, and keep it for the
-- delivery log (or delete it now: log off). The log's trim deletes it when
-- its entry leaves the log (created + keep_ms, or the cap); the TTL of
-- keep_ms from now is a backstop for a bot that sends nothing more, and
-- saves reading the entry's creation time on every ack.
-- ARGV: prefix, id, token, now_ms, attempt_json ('' = none), keep_ms.
-- Returns 1, 2 when its message's next delivery became due (per-message
-- order), or 0 for a stale lease.
local p, id = ARGV[1], ARGV[2]
local lane, ordered = end_attempt(p, id, ARGV[3], ARGV[5])
if not lane then
  return 0
end
local now, keep = tonumber(ARGV[4]), tonumber(ARGV[6])
local jk, ak = p .. ':job:' .. id, p .. ':att:' .. id
redis.call('ZREM', p .. ':lane:' .. lane, id)
local promoted = ordered and advance(p, id, lane, true, now)
if keep > 0 then
  redis.call('HSET', jk, 'done_ms', now)
  redis.call('PEXPIRE', jk, keep)
  redis.call('PEXPIRE', ak, keep)
else
  redis.call('DEL', jk, ak)
end
rescore(p, lane, now)
if promoted then
  return 2
end
return 1
