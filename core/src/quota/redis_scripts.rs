//! The Lua scripts of the Redis quota backend ([`super::redis`]). Per
//! budget (line) four keys, `KEYS[4i-3 .. 4i]`: the settled use (a
//! string), the open reservations and leases (a sorted set scored by
//! expiry, members `<id>:<amount>`), their running sum (a string), and the
//! leases' current sizes (a hash, lease id → amount; lease ids start with
//! `L`). The set and the sum are given [`LIFE_MS`] when a reservation
//! finds the budget with none open, and keep it (no expiry set per call):
//! a key belongs to one day or month, so it outlives its window, and it
//! goes as soon as its last reservation does (Redis drops an empty set,
//! the scripts a sum of 0). A step reads every line's use and sum with one `MGET` and drops
//! the expired reservations of a line only when they could matter: when
//! the call would not fit, and in `quota status`. A kept expired
//! reservation only makes the sum larger, so a call that fits with it
//! fits without it: the decision is the same, for fewer commands.

/// Redis' clock, unix milliseconds.
const NOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// `read()`: every line's used and (unswept) reserved sum, one `MGET`;
/// `sweep(i, reserved)`: drops line i's expired reservations and leases,
/// returns the sum left.
const READ: &str = r"
local function read()
  local names, used, reserved = {}, {}, {}
  local n = #KEYS / 4
  if n == 0 then return used, reserved end
  for i = 1, n do
    names[2 * i - 1] = KEYS[4 * i - 3]
    names[2 * i] = KEYS[4 * i - 1]
  end
  local v = redis.call('MGET', unpack(names))
  for i = 1, n do
    used[i] = tonumber(v[2 * i - 1] or '0')
    reserved[i] = tonumber(v[2 * i] or '0')
  end
  return used, reserved
end
local function sweep(i, reserved)
  local res, sum = KEYS[4 * i - 2], KEYS[4 * i - 1]
  local gone = redis.call('ZRANGEBYSCORE', res, '-inf', now)
  if #gone == 0 then return reserved end
  for _, m in ipairs(gone) do
    local id, amount = string.match(m, '^(.*):(%d+)$')
    reserved = reserved - tonumber(amount)
    if string.sub(id, 1, 1) == 'L' then redis.call('HDEL', KEYS[4 * i], id) end
  end
  redis.call('ZREMRANGEBYSCORE', res, '-inf', now)
  if reserved > 0 then
    redis.call('SET', sum, string.format('%d', reserved), 'KEEPTTL')
  else
    reserved = 0
    redis.call('DEL', sum)
  end
  return reserved
end
";

/// `shrink(i, lease, by)`: line i's lease gives `by` back (a call that
/// took it settled, or the unused part returns); a lease that already
/// expired has nothing to give.
const SHRINK: &str = r"
local function shrink(i, lid, by)
  local leases, res, sum = KEYS[4 * i], KEYS[4 * i - 2], KEYS[4 * i - 1]
  local cur = redis.call('HGET', leases, lid)
  if not cur then return end
  local m = lid .. ':' .. cur
  local score = redis.call('ZSCORE', res, m)
  if not score then
    redis.call('HDEL', leases, lid)
    return
  end
  cur = tonumber(cur)
  if by > cur then by = cur end
  redis.call('ZREM', res, m)
  if cur > by then
    local left = string.format('%d', cur - by)
    redis.call('ZADD', res, score, lid .. ':' .. left)
    redis.call('HSET', leases, lid, left)
  else
    redis.call('HDEL', leases, lid)
  end
  if redis.call('DECRBY', sum, by) <= 0 then redis.call('DEL', sum) end
end
";

/// ARGV: id, ttl_ms, hold_ms, lease id (`''`: none), lease calls, then
/// per line limit, amount, enforce (1/0), a lease to give back first
/// (`''`: none) and its unused part. Returns now_ms, the refused line
/// (0: none), 1 if the lease was carved, then used, reserved per line.
/// The lease is carved (size `(calls + 1) × amount` per line, the call's
/// reservation its first part) only if every line keeps at least
/// `share` leases unreserved after it.
const RESERVE: &str = r"
local ttl, hold, lid, calls = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local n = #KEYS / 4
for i = 1, n do
  if ARGV[5 * i + 4] ~= '' then shrink(i, ARGV[5 * i + 4], tonumber(ARGV[5 * i + 5])) end
end
local used, reserved = read()
local out = {now, 0, 0}
for i = 1, n do
  local limit, amount = tonumber(ARGV[5 * i + 1]), tonumber(ARGV[5 * i + 2])
  if used[i] + reserved[i] + amount > limit then
    reserved[i] = sweep(i, reserved[i])
  end
  local free = limit - used[i] - reserved[i] - amount
  if out[2] == 0 and ARGV[5 * i + 3] == '1' and free < 0 then out[2] = i end
  if free < amount * calls * (SHARE + 1) then calls = 0 end
  out[2 + 2 * i] = used[i]
  out[3 + 2 * i] = reserved[i]
end
if out[2] == 0 then
  local member, expiry, size = ARGV[1], now + ttl, 1
  if calls > 0 then
    out[3], member, expiry, size = 1, lid, now + hold, calls + 1
  end
  local keep = hold + 60000
  for i = 1, n do
    local amount = tonumber(ARGV[5 * i + 2]) * size
    local a = string.format('%d', amount)
    redis.call('ZADD', KEYS[4 * i - 2], expiry, member .. ':' .. a)
    if reserved[i] > 0 then
      redis.call('INCRBY', KEYS[4 * i - 1], amount)
    else
      redis.call('PEXPIRE', KEYS[4 * i - 2], LIFE)
      redis.call('SET', KEYS[4 * i - 1], a, 'PX', LIFE)
    end
    if calls > 0 then
      redis.call('HSET', KEYS[4 * i], lid, a)
      redis.call('PEXPIRE', KEYS[4 * i], keep)
    end
  end
end
return out
";

/// ARGV: id, then per line the lease the call took from (`''`: its own
/// reservation `id`), reserved, actual, expire_at. A reservation that
/// already expired is not subtracted twice.
const SETTLE: &str = r"
for i = 1, #KEYS / 4 do
  local b = 4 * i - 2
  local reserved = ARGV[b + 1]
  if ARGV[b] ~= '' then
    shrink(i, ARGV[b], tonumber(reserved))
  elseif redis.call('ZREM', KEYS[4 * i - 2], ARGV[1] .. ':' .. reserved) == 1 then
    if redis.call('DECRBY', KEYS[4 * i - 1], reserved) <= 0 then
      redis.call('DEL', KEYS[4 * i - 1])
    end
  end
  local actual = tonumber(ARGV[b + 2])
  if actual > 0 then
    redis.call('INCRBY', KEYS[4 * i - 3], actual)
    redis.call('EXPIREAT', KEYS[4 * i - 3], ARGV[b + 3])
  end
end
return 1
";

/// Returns used, reserved per line (expired reservations dropped).
const COUNTS: &str = r"
local used, reserved = read()
local out = {}
for i = 1, #KEYS / 4 do
  out[2 * i - 1] = used[i]
  out[2 * i] = sweep(i, reserved[i])
end
return out
";

/// How long a budget's reservations set and sum live (35 days, in ms):
/// longer than a month plus any reservation's hold.
pub const LIFE_MS: u64 = 35 * 24 * 3600 * 1000;

/// The reservation script; a lease is carved only if `share` more leases
/// would still fit.
pub fn reserve(share: u64) -> String {
    format!("local SHARE, LIFE = {share}, {LIFE_MS}\n{NOW}{READ}{SHRINK}{RESERVE}")
}

/// The settlement script.
pub fn settle() -> String {
    format!("{SHRINK}{SETTLE}")
}

/// The counts script.
pub fn counts() -> String {
    format!("{NOW}{READ}{COUNTS}")
}
