/**
 * The Lua scripts of the Redis feature store. Each runs atomically, so a tenant's count of stored
 * values (`<prefix>n`, field = tenant) moves exactly with the fields it stores and removes
 * (#13, finding 8), and a write past the tenant's cap stores nothing.
 *
 * A hash whose features all expire is given a PEXPIRE (Redis 7.0 has no per-field expiry), so
 * Redis may drop it unseen. Its field count is therefore kept beside it (`<prefix>l:<tenant>`,
 * field = hash key) with its expiry (`<prefix>x:<tenant>`, a sorted set by expiry in ms of the
 * store's clock); `reap` takes expired hashes off the count, whoever deleted them first.
 */

/** Shared by the scripts: KEYS[1] counts, KEYS[2] expiries, KEYS[3] lengths; ARGV[1] tenant. */
const REAP = `
local function reap(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 512)
  for _, ek in ipairs(gone) do
    local c = tonumber(redis.call('HGET', KEYS[3], ek) or '0')
    if c > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -c) end
    redis.call('HDEL', KEYS[3], ek)
    redis.call('ZREM', KEYS[2], ek)
    redis.call('DEL', ek)
  end
end
-- A tracked hash Redis already expired: its fields are gone, so is their count.
local function settleExpired(ek)
  if redis.call('EXISTS', ek) == 0 then
    local c = tonumber(redis.call('HGET', KEYS[3], ek) or '0')
    if c > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -c) end
    redis.call('HDEL', KEYS[3], ek)
    redis.call('ZREM', KEYS[2], ek)
  end
end
-- Keeps a tracked hash's field count in step after fields were removed.
local function retrack(ek)
  if redis.call('ZSCORE', KEYS[2], ek) then
    local n = redis.call('HLEN', ek)
    if n == 0 then
      redis.call('HDEL', KEYS[3], ek)
      redis.call('ZREM', KEYS[2], ek)
    else
      redis.call('HSET', KEYS[3], ek, n)
    end
  end
end
`;

/**
 * A batch of values for one tenant, all or nothing. ARGV[2] cap (-1: none), ARGV[3] now (ms),
 * ARGV[4] entities; then per entity: key, ttl ms ('' = never expires), entity id, field count,
 * and per field: name, JSON entry, user index key ('' = none). Fields are unique per entity.
 * Returns {stored (1/0), held after, new values}.
 */
export const WRITE_LUA = `${REAP}
local cap = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
reap(now)
local new = 0
local i = 5
for e = 1, tonumber(ARGV[4]) do
  local ek, nf = ARGV[i], tonumber(ARGV[i + 3])
  settleExpired(ek)
  i = i + 4
  for f = 1, nf do
    if redis.call('HEXISTS', ek, ARGV[i]) == 0 then new = new + 1 end
    i = i + 3
  end
end
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cap >= 0 and new > 0 and held + new > cap then return {0, held, new} end
i = 5
local added = 0
for e = 1, tonumber(ARGV[4]) do
  local ek, ttl, eid, nf = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  for f = 1, nf do
    added = added + redis.call('HSET', ek, ARGV[i], ARGV[i + 1])
    if ARGV[i + 2] ~= '' then redis.call('SADD', ARGV[i + 2], eid) end
    i = i + 3
  end
  if ttl == '' then
    redis.call('PERSIST', ek)
    redis.call('ZREM', KEYS[2], ek)
    redis.call('HDEL', KEYS[3], ek)
  else
    redis.call('PEXPIRE', ek, ttl)
    redis.call('ZADD', KEYS[2], now + tonumber(ttl), ek)
    redis.call('HSET', KEYS[3], ek, redis.call('HLEN', ek))
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], added) end
return {1, held + added, new}
`;

/** The tenant's count after reaping expired hashes. ARGV[2] now (ms). */
export const STORED_LUA = `${REAP}
reap(tonumber(ARGV[2]))
return tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
`;

/** Drops expired fields of one hash. ARGV[2] hash key, ARGV[3..] fields. Returns how many. */
export const DROP_LUA = `${REAP}
local ek = ARGV[2]
local removed = 0
for j = 3, #ARGV do removed = removed + redis.call('HDEL', ek, ARGV[j]) end
if removed > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -removed) end
retrack(ek)
return removed
`;

/**
 * Atomic purge of one user's values: walks the user's index of entities (KEYS[4]), deletes the
 * fields whose entry is the user's (and, when purposes are given, needs one of them), and prunes
 * the index. ARGV[2] = entity key prefix; ARGV[3] = user id; ARGV[4..] = purposes.
 */
export const PURGE_LUA = `${REAP}
local members = redis.call('SMEMBERS', KEYS[4])
local scoped = #ARGV > 3
local purposes = {}
for i = 4, #ARGV do purposes[ARGV[i]] = true end
local removed = 0
for _, entity in ipairs(members) do
  local key = ARGV[2] .. entity
  local flat = redis.call('HGETALL', key)
  local still = false
  local here = 0
  for j = 1, #flat, 2 do
    local ok, e = pcall(cjson.decode, flat[j + 1])
    if ok and e.userId == ARGV[3] then
      if (not scoped) or (e.purpose and purposes[e.purpose]) then
        redis.call('HDEL', key, flat[j])
        here = here + 1
      else
        still = true
      end
    end
  end
  if here > 0 then retrack(key) end
  removed = removed + here
  if not still then redis.call('SREM', KEYS[4], entity) end
end
if removed > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -removed) end
return removed
`;
