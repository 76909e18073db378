//! The server-side Lua scripts: each runs atomically in Redis, so two nodes never
//! read-modify-write the same channel (CLUS-1, CLUS-2). Learned from Centrifugo's Redis
//! engine (its publish script increments the stream top, appends and publishes in one
//! call); written for this project.

/// Ensures the channel has an epoch (a new channel, or one whose keys the broker lost,
/// starts at seq 0 in the candidate epoch `ARGV[1]`, HIST-3); returns `{epoch, seq, bseq}`.
///
/// KEYS: meta.
pub const POSITION: &str = r#"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seq', 0, 'sver', 0, 'slen', 0, 'bseq', 0)
end
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'bseq')
return {m[1], tonumber(m[2]) or 0, tonumber(m[3]) or 0}
"#;

/// Lua functions every publishing script starts with.
///
/// `ensure_epoch(meta, history, recent, candidate)` creates the channel's epoch when
/// missing (dropping what an older epoch left) and returns it.
///
/// `publish_ordered(meta, recent, origin, bus, keep, epoch, known, after, tail)` gives the
/// payload `origin..bseq..tail` the channel's next place in its one bus order, keeps it in
/// the recent list (trimmed to `keep`), publishes it on `bus` and collects what the calling
/// node missed: when it delivers epoch `known` up to `bseq` `after`, the recent payloads
/// after that and before this one (`complete` 0 when some are no longer kept). Returns
/// `{bseq, complete, missed...}`.
///
/// `announce(k, a, candidate, frame)`: an ephemeral frame published in that order, with
/// the keys meta, history and recent at `KEYS[k]` on and, from `ARGV[a]` on, the origin
/// node, bus channel, length of the recent list, delivered epoch (or ""), delivered `bseq`
/// (or -1) and the connection the frame is not for (or ""). Returns `{epoch, bseq,
/// complete, missed...}`.
pub const ORDER_FUNCTIONS: &str = r#"
local function ensure_epoch(meta, history, recent, candidate)
  if redis.call('HSETNX', meta, 'epoch', candidate) == 1 then
    redis.call('HSET', meta, 'seq', 0, 'sver', 0, 'slen', 0, 'bseq', 0)
    redis.call('DEL', history, recent)
  end
  return redis.call('HGET', meta, 'epoch')
end
local function publish_ordered(meta, recent, origin, bus, keep, epoch, known, after, tail)
  local bseq = redis.call('HINCRBY', meta, 'bseq', 1)
  local payload = origin .. '\n' .. bseq .. '\n' .. tail
  redis.call('RPUSH', recent, payload)
  redis.call('LTRIM', recent, -tonumber(keep), -1)
  redis.call('PUBLISH', bus, payload)
  local out = {bseq, 1}
  after = tonumber(after)
  if epoch == known and after >= 0 and after < bseq - 1 then
    local len = redis.call('LLEN', recent)
    local first = bseq - len + 1
    if after + 1 < first then
      out[2] = 0
    else
      local missed = redis.call('LRANGE', recent, after + 1 - first, len - 2)
      for _, e in ipairs(missed) do table.insert(out, e) end
    end
  end
  return out
end
local function announce(k, a, candidate, frame)
  local epoch = ensure_epoch(KEYS[k], KEYS[k + 1], KEYS[k + 2], candidate)
  local tail = epoch .. '\n\n' .. ARGV[a + 5] .. '\n' .. frame
  local out = publish_ordered(KEYS[k], KEYS[k + 2], ARGV[a], ARGV[a + 1], ARGV[a + 2],
    epoch, ARGV[a + 3], ARGV[a + 4], tail)
  table.insert(out, 1, epoch)
  return out
end
"#;

/// [`ORDER_FUNCTIONS`]' `publish_ordered` over the usual keys (meta, history, recent) and
/// ARGV 3 to 7 (origin, bus, length of the recent list, delivered epoch and `bseq`), for a
/// script that defined `epoch` and `tail`; sets `out`.
const PUBLISH_ORDERED: &str = r#"
local out = publish_ordered(KEYS[1], KEYS[3], ARGV[3], ARGV[4], ARGV[5], epoch, ARGV[6],
  ARGV[7], tail)
"#;

/// [`ORDER_FUNCTIONS`]' `ensure_epoch` over the usual keys, candidate `ARGV[1]`; sets
/// `epoch`.
const ENSURE_EPOCH: &str = r#"
local epoch = ensure_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
"#;

/// Numbers one stream item, appends it, trims the history and publishes it in the
/// channel's one bus order, all at once: the bus carries items in `seq` order and every
/// frame of the channel in one order (CLUS-1, CLUS-7).
///
/// KEYS: meta, history, recent. ARGV: 1 candidate epoch, 2 the frame before its `seq`,
/// 3 origin node, 4 bus channel, 5 retention (of the history and the recent list), 6 the
/// epoch this node delivers (or ""), 7 the last `bseq` this node delivered (or -1), 8 the
/// frame after its `seq`, 9 the history entry's header.
///
/// Returns `{epoch, seq, bseq, complete, missed payloads...}` (see [`PUBLISH_ORDERED`]).
pub fn append() -> String {
    format!(
        "{ORDER_FUNCTIONS}{ENSURE_EPOCH}{}{PUBLISH_ORDERED}{}",
        r#"
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local frame = ARGV[2] .. seq .. ARGV[8]
redis.call('RPUSH', KEYS[2], ARGV[9] .. frame)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
local tail = epoch .. '\n' .. seq .. '\n\n' .. frame
"#,
        r#"
table.insert(out, 1, seq)
table.insert(out, 1, epoch)
return out
"#
    )
}

/// Publishes an ephemeral frame (presence, state, cursors) in the channel's one bus order
/// (CLUS-7): no `seq`, but a `bseq` like every frame of the channel.
///
/// KEYS: meta, history, recent. ARGV: 1 candidate epoch, 2 to 7 the publish arguments of
/// `announce` (origin node, bus channel, length of the recent list, delivered epoch and
/// `bseq`, the connection the frame is not for), 8 the frame.
///
/// Returns `{epoch, bseq, complete, missed payloads...}`.
pub fn relay() -> String {
    format!("{ORDER_FUNCTIONS}return announce(1, 2, ARGV[1], ARGV[8])")
}

/// The recent payloads with `bseq` after `ARGV[1]` and up to `ARGV[2]`.
///
/// KEYS: meta, recent. Returns `{epoch or false, bseq, complete, payloads...}`.
pub const READ_RECENT: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'epoch', 'bseq')
if not m[1] then return {false, 0, 0} end
local top = tonumber(m[2]) or 0
local len = redis.call('LLEN', KEYS[2])
local first = top - len + 1
local after, upto = tonumber(ARGV[1]), tonumber(ARGV[2])
if upto > top then upto = top end
if after + 1 < first then return {m[1], top, 0} end
local out = {m[1], top, 1}
if upto > after then
  local items = redis.call('LRANGE', KEYS[2], after + 1 - first, upto - first)
  for _, e in ipairs(items) do table.insert(out, e) end
end
return out
"#;

/// Forgets the channel (ROOM-17, STATE-26) and starts its new epoch `ARGV[1]` at once,
/// announcing it on the bus `ARGV[2]` with the reset payload (bseq 0, no frame) so that
/// nodes delivering the channel follow it instead of taking it for a loss (CLUS-9).
///
/// KEYS: meta, then every other key of the channel. ARGV: 3 origin node.
pub const DISCARD: &str = r#"
redis.call('DEL', unpack(KEYS))
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', 0, 'sver', 0, 'slen', 0, 'bseq', 0)
redis.call('PUBLISH', ARGV[2], ARGV[3] .. '\n0\n' .. ARGV[1] .. '\n\n\n')
return 1
"#;

/// Sets a node's statistics hash (KEYS[1]): `ARGV[1]` 1 replaces the whole hash, 0
/// changes only the fields given; then keeps it alive for `ARGV[2]` ms. ARGV from 3 on:
/// field, count pairs (a count of 0 drops the field).
pub const SHARE: &str = r#"
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
for i = 3, #ARGV, 2 do
  if tonumber(ARGV[i + 1]) > 0 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// A tenant's statistics summed over the nodes of `ARGV[1]:nodeset` whose statistics hash
/// lives (HTTP-14a, HTTP-14b, CLUS-4): ARGV 2 the tenant, 3 the prefix of its channel ids.
/// Channels with subscribers on some node, or with members (found through the nodes' sets
/// of channels with leases). Reads keys it is not given: one Redis, not a Redis Cluster.
///
/// Returns `{connections, subscriptions, id1, subscribers1, members1, ...}`.
pub const STATS: &str = r#"
local p, tenant, ids = ARGV[1], ARGV[2], ARGV[3]
local conns, total = 0, 0
local subs, order = {}, {}
local function note(id)
  if subs[id] == nil then subs[id] = 0; table.insert(order, id) end
end
for _, n in ipairs(redis.call('SMEMBERS', p .. ':nodeset')) do
  local h = redis.call('HGETALL', p .. ':stats:' .. n)
  for i = 1, #h, 2 do
    local f, v = h[i], tonumber(h[i + 1])
    if f == 'c:' .. tenant then
      conns = conns + v
    elseif string.sub(f, 1, 2 + #ids) == 's:' .. ids then
      local id = string.sub(f, 3)
      note(id)
      subs[id] = subs[id] + v
      total = total + v
    end
  end
  for _, id in ipairs(redis.call('SMEMBERS', p .. ':nodechans:' .. n)) do
    if string.sub(id, 1, #ids) == ids then note(id) end
  end
end
local out = {conns, total}
for _, id in ipairs(order) do
  local members = redis.call('HLEN', p .. ':pres:' .. id)
  if subs[id] > 0 or members > 0 then
    table.insert(out, id); table.insert(out, subs[id]); table.insert(out, members)
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
/// (STATE-9), atomic across nodes (CLUS-2), and the publish of its event in the same call:
/// the version is assigned and the event takes its place in the channel's one bus order
/// at once, so every subscriber gets a channel's state events in version order (CLUS-7,
/// CHAN-46), whatever node each write came through.
///
/// KEYS: meta, history, recent, state. ARGV: 1 candidate epoch, 2 `quiet` to leave the
/// event unpublished (the `cluster_ephemeral_unpublished` fault only) or "", 3 to 8 as
/// [`relay`], 9 expected version (or ""), 10 expected epoch (or ""), 11 max bytes, 12 the
/// event before its version, 13 between its version and its epoch, 14 after its epoch,
/// then per changed key: its name, the length of its JSON string, and `s<json>` (set) or
/// `d` (delete).
///
/// Returns `{outcome, epoch, version}`, then when applied `bseq, complete, missed
/// payloads...` (see [`PUBLISH_ORDERED`]): outcome 1 applied, 0 conflict, -1 too large.
pub fn write_state() -> String {
    format!(
        "{ORDER_FUNCTIONS}{ENSURE_EPOCH}{}{PUBLISH_ORDERED}{}",
        r#"
local m = redis.call('HMGET', KEYS[1], 'sver', 'slen')
local ver, len = tonumber(m[1]) or 0, tonumber(m[2]) or 0
if (ARGV[9] ~= '' and tonumber(ARGV[9]) ~= ver) or (ARGV[10] ~= '' and ARGV[10] ~= epoch) then
  return {0, epoch, ver}
end
local count = redis.call('HLEN', KEYS[4])
local seen = {}
for i = 15, #ARGV, 3 do
  local field, keylen, op = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local old = seen[field]
  if old == nil then old = redis.call('HGET', KEYS[4], field) end
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
if size > tonumber(ARGV[11]) then return {-1, epoch, ver} end
for field, v in pairs(seen) do
  if v then redis.call('HSET', KEYS[4], field, v) else redis.call('HDEL', KEYS[4], field) end
end
ver = ver + 1
redis.call('HSET', KEYS[1], 'sver', ver, 'slen', len)
if ARGV[2] == 'quiet' then return {1, epoch, ver, 0, 1} end
local frame = ARGV[12] .. ver .. ARGV[13] .. epoch .. ARGV[14]
local tail = epoch .. '\n\n' .. ARGV[8] .. '\n' .. frame
"#,
        r#"
table.insert(out, 1, ver)
table.insert(out, 1, epoch)
table.insert(out, 1, 1)
return out
"#
    )
}

/// The whole shared state, creating the channel's epoch when missing.
///
/// KEYS: meta, state. ARGV: 1 candidate epoch. Returns `{epoch, version, k1, v1, ...}`.
pub const READ_STATE: &str = r#"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seq', 0, 'sver', 0, 'slen', 0, 'bseq', 0)
end
local m = redis.call('HMGET', KEYS[1], 'epoch', 'sver')
local out = {m[1], tonumber(m[2]) or 0}
for _, x in ipairs(redis.call('HGETALL', KEYS[2])) do table.insert(out, x) end
return out
"#;
