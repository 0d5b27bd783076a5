-- Walk a delivery-log index (a bot's, or one of its message or recipient
-- indexes) newest first: up to `count` entries created from max_ms down to
-- min_ms, going on after `after_id` at max_ms when given (ids created in
-- the same ms come in descending id order). Entries whose job is gone are
-- dropped from the index and returned without a record.
-- ARGV: prefix, key, max_ms, after_id ('' = none), min_ms, count.
-- Returns a list of {id, created_ms, record}, record as read_job gives it
-- or false (nil to the caller) when gone.
local p, key = ARGV[1], ARGV[2]
local max, after, min, count = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local entries = {}
if after ~= '' then
  -- The rest of the entries created in the cursor's ms.
  local ties = redis.call('ZRANGEBYSCORE', key, max, max)
  for j = #ties, 1, -1 do
    if ties[j] < after and #entries < count then
      table.insert(entries, {ties[j], tonumber(max)})
    end
  end
  max = '(' .. max
end
if #entries < count then
  local rest = redis.call('ZREVRANGEBYSCORE', key, max, min, 'WITHSCORES', 'LIMIT', 0, count - #entries)
  for j = 1, #rest, 2 do
    table.insert(entries, {rest[j], tonumber(rest[j + 1])})
  end
end
local out = {}
for _, e in ipairs(entries) do
  local record = read_job(p, e[1])
  if not record then
    redis.call('ZREM', key, e[1])
    record = false
  end
  table.insert(out, {e[1], e[2], record})
end
return out
