//! Presence in Redis (CLUS-3, CLUS-4, CLUS-8): a channel's members keyed by user, each
//! with the leases of the connections (on any node) that keep it.
//!
//! `P:pres:C` maps a user to `joined_at \t last_seen \t status \t profile \t data` (the
//! last three compact JSON, which cannot hold a raw tab); `P:lease:C` maps the user to its
//! leases, `conn:grace;` each (`grace` empty for a live lease, else the deadline of a grace
//! lease). A connection id carries its node's number in its high bits, so a dead node's
//! leases are found by their ids. Learned from Phoenix's tracker (presence entries owned
//! by a node, removed when the node is gone); written for this project.

/// Shared Lua helpers: lease lists, member records, and the announcement of a change in the
/// channel's one order in the same call as the change (CHAN-46 across nodes).
const HELPERS: &str = r#"
local function announced(r, k, a, candidate, frame)
  if frame ~= '' then
    for _, x in ipairs(announce(k, a, candidate, frame)) do table.insert(r, x) end
  end
  return r
end
local function leases_of(s)
  local out = {}
  for conn, grace in string.gmatch(s or '', '(%d+):(%d*);') do
    table.insert(out, {conn, grace})
  end
  return out
end
local function lease_text(ls)
  local t = {}
  for _, l in ipairs(ls) do table.insert(t, l[1] .. ':' .. l[2] .. ';') end
  return table.concat(t)
end
local function touch(rec, now)
  local j, ls, rest = string.match(rec, '^(%d+)\t(%d+)\t(.*)$')
  if tonumber(now) > tonumber(ls) then ls = now end
  return j .. '\t' .. ls .. '\t' .. rest, ls
end
local function remove_lease(pres, lease, user, ls, i)
  table.remove(ls, i)
  if #ls == 0 then
    local rec = redis.call('HGET', pres, user)
    redis.call('HDEL', pres, user)
    redis.call('HDEL', lease, user)
    local _, last = string.match(rec or '0\t0\t', '^(%d+)\t(%d+)\t')
    return {'left', last}
  end
  redis.call('HSET', lease, user, lease_text(ls))
  return {'kept'}
end
local function left_announced(r)
  if r[1] ~= 'left' or ARGV[11] == '' then return r end
  return announced(r, 3, 5, ARGV[4], ARGV[11] .. r[2] .. ARGV[12])
end
"#;

/// Takes a lease for `ARGV[1]` (conn) of `ARGV[2]` (user) at `ARGV[3]` (now), creating the
/// member with profile `ARGV[4]` (PRES-3), or taking over its oldest grace lease (PRES-28).
///
/// KEYS: pres, lease, the node's set of channels with leases, then meta, history, recent.
/// ARGV[5]: the channel id; 6: candidate epoch; 7 to 12: the publish arguments of
/// `announce` (scripts.rs); 13: the `user:joined` frame to announce when the user joins
/// (or "").
/// Returns `{'joined', record, announce's reply...}`, `{'added'}` or `{'took_over'}`.
pub const TAKE: &str = r#"
local conn, user, now = ARGV[1], ARGV[2], ARGV[3]
redis.call('SADD', KEYS[3], ARGV[5])
local rec = redis.call('HGET', KEYS[1], user)
if not rec then
  rec = now .. '\t' .. now .. '\t"online"\t' .. ARGV[4] .. '\t{}'
  redis.call('HSET', KEYS[1], user, rec)
  redis.call('HSET', KEYS[2], user, conn .. ':;')
  return announced({'joined', rec}, 4, 7, ARGV[6], ARGV[13])
end
redis.call('HSET', KEYS[1], user, (touch(rec, now)))
local ls = leases_of(redis.call('HGET', KEYS[2], user))
local oldest = nil
for i, l in ipairs(ls) do
  if l[2] ~= '' and (oldest == nil or tonumber(l[2]) < tonumber(ls[oldest][2])) then oldest = i end
end
if oldest then
  ls[oldest] = {conn, ''}
  redis.call('HSET', KEYS[2], user, lease_text(ls))
  return {'took_over'}
end
table.insert(ls, {conn, ''})
redis.call('HSET', KEYS[2], user, lease_text(ls))
return {'added'}
"#;

/// Releases the live lease of `ARGV[1]` (conn) on `ARGV[2]` (user): now, or as a grace
/// lease until `ARGV[3]` when not empty.
///
/// KEYS: pres, lease, meta, history, recent. ARGV 4: candidate epoch; 5 to 10: the publish
/// arguments of `announce`; 11 and 12: the `user:left` frame before and after its
/// `last_seen`, announced when the user leaves (or "" and "").
/// Returns `{'none'}`, `{'kept'}` or `{'left', last_seen, announce's reply...}`.
pub const RELEASE: &str = r#"
local conn, user, grace = ARGV[1], ARGV[2], ARGV[3]
local ls = leases_of(redis.call('HGET', KEYS[2], user))
for i, l in ipairs(ls) do
  if l[1] == conn and l[2] == '' then
    if grace ~= '' then
      l[2] = grace
      redis.call('HSET', KEYS[2], user, lease_text(ls))
      return {'kept'}
    end
    return left_announced(remove_lease(KEYS[1], KEYS[2], user, ls, i))
  end
end
return {'none'}
"#;

/// Ends the grace lease of `ARGV[1]` (conn) on `ARGV[2]` (user) armed for `ARGV[3]`; a
/// lease taken over since no longer matches (PRES-28).
///
/// KEYS and ARGV from 4 on as [`RELEASE`]. Returns like [`RELEASE`].
pub const EXPIRE: &str = r#"
local conn, user, deadline = ARGV[1], ARGV[2], ARGV[3]
local ls = leases_of(redis.call('HGET', KEYS[2], user))
for i, l in ipairs(ls) do
  if l[1] == conn and l[2] == deadline then
    return left_announced(remove_lease(KEYS[1], KEYS[2], user, ls, i))
  end
end
return {'none'}
"#;

/// Replaces status (`ARGV[2]`, JSON, or empty) and data (`ARGV[3]`, or empty) of member
/// `ARGV[1]` and advances `last_seen` to `ARGV[4]` (PRES-16, PRES-24).
///
/// KEYS: pres, meta, history, recent. ARGV 5: candidate epoch; 6 to 11: the publish
/// arguments of `announce`; 12: the `presence:updated` frame up to the member's `profile`
/// value, announced with the member completed from the record (or "": a touch, PRES-24,
/// announces nothing).
/// Returns `{record, announce's reply...}`, or false when the user is not a member.
pub const UPDATE: &str = r#"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return false end
rec = touch(rec, ARGV[4])
local j, ls, status, profile, data = string.match(rec, '^(%d+)\t(%d+)\t([^\t]*)\t([^\t]*)\t(.*)$')
if ARGV[2] ~= '' then status = ARGV[2] end
if ARGV[3] ~= '' then data = ARGV[3] end
rec = j .. '\t' .. ls .. '\t' .. status .. '\t' .. profile .. '\t' .. data
redis.call('HSET', KEYS[1], ARGV[1], rec)
if ARGV[12] == '' then return {rec} end
local frame = ARGV[12] .. profile .. ',"status":' .. status .. ',"data":' .. data
  .. ',"joined_at":' .. j .. ',"last_seen":' .. ls .. '}}'
return announced({rec}, 2, 6, ARGV[5], frame)
"#;

/// The members with the channel's place in its one order when they were read (PRES-7
/// across nodes: the events up to that place are reflected in the snapshot).
///
/// KEYS: pres, meta. Returns `{epoch or false, bseq, user1, record1, ...}`.
pub const READ_MEMBERS: &str = r#"
local m = redis.call('HMGET', KEYS[2], 'epoch', 'bseq')
local out = {m[1] or false, tonumber(m[2]) or 0}
for _, x in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, x) end
return out
"#;

/// Removes every lease of node `ARGV[1]` (a dead node, CLUS-8) from the channel.
///
/// KEYS: pres, lease. Returns `{user, last_seen, ...}` of the members that left.
pub const DROP_NODE: &str = r#"
local node = tonumber(ARGV[1])
local shift = 2 ^ tonumber(ARGV[2])
local out = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local user, ls = all[i], leases_of(all[i + 1])
  local kept = {}
  for _, l in ipairs(ls) do
    if math.floor(tonumber(l[1]) / shift) ~= node then table.insert(kept, l) end
  end
  if #kept < #ls then
    if #kept == 0 then
      local rec = redis.call('HGET', KEYS[1], user)
      redis.call('HDEL', KEYS[1], user)
      redis.call('HDEL', KEYS[2], user)
      local _, last = string.match(rec or '0\t0\t', '^(%d+)\t(%d+)\t')
      table.insert(out, user)
      table.insert(out, last)
    else
      redis.call('HSET', KEYS[2], user, lease_text(kept))
    end
  end
end
return out
"#;

/// The script with the helpers (and the publishing functions they use) in front.
pub fn with_helpers(body: &str) -> String {
    format!("{}{HELPERS}{body}", super::scripts::ORDER_FUNCTIONS)
}
