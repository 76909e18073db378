//! The server-side Lua scripts: each runs atomically in Redis, so two nodes never
//! read-modify-write the same channel (CLUS-1, CLUS-2). Learned from Centrifugo's Redis
//! engine (its publish script increments the stream top, appends and publishes in one
//! call); written for this project.

/// Ensures the channel has an epoch (a new channel, or one whose keys the broker lost,
/// starts at seq 0 in the candidate epoch `ARGV[1]`, HIST-3); returns `{epoch, seq}`.
///
/// KEYS: meta.
pub const POSITION: &str = r#"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seq', 0, 'sver', 0, 'slen', 0)
end
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
return {m[1], tonumber(m[2]) or 0}
"#;

/// Numbers one stream item, appends it, trims the history and publishes it to the nodes
/// that subscribe, all at once: the bus carries items in `seq` order (CLUS-1).
///
/// KEYS: meta, history. ARGV: 1 candidate epoch, 2 the frame before its `seq`, 3 the
/// frame after it, 4 the history entry's header, 5 retention, 6 the epoch this node
/// delivers (or ""), 7 the last `seq` this node delivered (or -1), 8 bus channel,
/// 9 origin node.
///
/// Returns `{epoch, seq, complete, missed...}`: when the node delivers this epoch, the
/// retained items after ARGV[7] and before this one (`complete` 0 when some of them are
/// no longer retained).
pub const APPEND: &str = r#"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seq', 0, 'sver', 0, 'slen', 0)
  redis.call('DEL', KEYS[2])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local frame = ARGV[2] .. seq .. ARGV[3]
redis.call('RPUSH', KEYS[2], ARGV[4] .. frame)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
redis.call('PUBLISH', ARGV[8], ARGV[9] .. '\n' .. epoch .. '\n' .. seq .. '\n\n' .. frame)
local out = {epoch, seq, 1}
local after = tonumber(ARGV[7])
if epoch == ARGV[6] and after >= 0 and after < seq - 1 then
  local len = redis.call('LLEN', KEYS[2])
  local first = seq - len + 1
  if after + 1 < first then
    out[3] = 0
  else
    local missed = redis.call('LRANGE', KEYS[2], after + 1 - first, len - 2)
    for _, e in ipairs(missed) do table.insert(out, e) end
  end
end
return out
"#;

/// The retained items after `ARGV[1]`, with the position they were read at.
///
/// KEYS: meta, history. Returns `{epoch or false, seq, first retained seq, entries...}`.
pub const READ_AFTER: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if not m[1] then return {false, 0, 1} end
local seq = tonumber(m[2]) or 0
local len = redis.call('LLEN', KEYS[2])
local first = seq - len + 1
local out = {m[1], seq, first}
local from = tonumber(ARGV[1]) + 1 - first
if from < 0 then from = 0 end
if from < len then
  local items = redis.call('LRANGE', KEYS[2], from, -1)
  for _, e in ipairs(items) do table.insert(out, e) end
end
return out
"#;

/// A shared-state write with compare-and-set (STATE-19, STATE-32) and the size limit
/// (STATE-9), atomic across nodes (CLUS-2).
///
/// KEYS: meta, state. ARGV: 1 candidate epoch, 2 expected version (or ""), 3 expected
/// epoch (or ""), 4 max bytes, then per changed key: its name, the length of its JSON
/// string, and `s<json>` (set) or `d` (delete).
///
/// Returns `{outcome, epoch, version}`: outcome 1 applied, 0 conflict, -1 too large.
pub const WRITE_STATE: &str = r#"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seq', 0, 'sver', 0, 'slen', 0)
end
local m = redis.call('HMGET', KEYS[1], 'epoch', 'sver', 'slen')
local epoch, ver, len = m[1], tonumber(m[2]) or 0, tonumber(m[3]) or 0
if (ARGV[2] ~= '' and tonumber(ARGV[2]) ~= ver) or (ARGV[3] ~= '' and ARGV[3] ~= epoch) then
  return {0, epoch, ver}
end
local count = redis.call('HLEN', KEYS[2])
local seen = {}
for i = 5, #ARGV, 3 do
  local field, keylen, op = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local old = seen[field]
  if old == nil then old = redis.call('HGET', KEYS[2], field) end
  if old then len = len - keylen - 1 - #old; count = count - 1 end
  if string.sub(op, 1, 1) == 's' then
    local v = string.sub(op, 2)
    len = len + keylen + 1 + #v; count = count + 1; seen[field] = v
  else
    seen[field] = false
  end
end
local size = 2 + len
if count > 1 then size = size + count - 1 end
if size > tonumber(ARGV[4]) then return {-1, epoch, ver} end
for field, v in pairs(seen) do
  if v then redis.call('HSET', KEYS[2], field, v) else redis.call('HDEL', KEYS[2], field) end
end
ver = ver + 1
redis.call('HSET', KEYS[1], 'sver', ver, 'slen', len)
return {1, epoch, ver}
"#;

/// The whole shared state, creating the channel's epoch when missing.
///
/// KEYS: meta, state. ARGV: 1 candidate epoch. Returns `{epoch, version, k1, v1, ...}`.
pub const READ_STATE: &str = r#"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seq', 0, 'sver', 0, 'slen', 0)
end
local m = redis.call('HMGET', KEYS[1], 'epoch', 'sver')
local out = {m[1], tonumber(m[2]) or 0}
for _, x in ipairs(redis.call('HGETALL', KEYS[2])) do table.insert(out, x) end
return out
"#;
