/**
 * The Redis limiter's Lua scripts. Every script that changes a counter carries the mark of its
 * command: bit `seq % 65536` of the replica's mark block `op:<replica>:<seq / 65536>`. A script
 * whose mark is set does nothing, and sets it when it does something; a write-back sets the marks
 * of the commands that timed out and learns which of them had reached Redis. So a command that
 * arrives late and the write-back of the same usage never both count (issue #13).
 *
 * Counters: a calendar bucket holds an integer; a rate holds "tat:per", its theoretical arrival
 * time (epoch ms) and ms per unit (GCRA). Numbers go back as strings (Lua numbers would be
 * truncated to integers).
 */

const MARKS = `
local function marked(k, bit) return redis.call('GETBIT', k, bit) == 1 end
local function mark(k, bit, ttl)
  redis.call('SETBIT', k, bit, 1)
  if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, ttl) end
end
local function tatOf(k, now)
  local v = redis.call('GET', k)
  if v then
    local t = tonumber(string.match(v, '^([^:]+)'))
    if t > now then return t end
  end
  return now
end
local function setTat(k, tat, per, now)
  redis.call('SET', k, string.format('%.3f:%s', tat, per), 'PX', math.ceil(tat - now) + 1000)
end
`;

/**
 * All-or-nothing check-and-take over N charges. KEYS: one per charge, then the mark block. ARGV:
 * N, now (epoch ms), mark bit, mark ttl, then per charge (kind, limit, amount, ms per unit, burst,
 * ttl ms); kind 1 is a rate, 0 a calendar counter. Returns {0, value per charge} when taken,
 * {i, wait ms, value} for the first charge that does not fit, {-1} when the mark is already set.
 */
export const RESERVE_LUA = `${MARKS}
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local mk = KEYS[n + 1]
if marked(mk, ARGV[3]) then return {-1} end
local vals = {}
for i = 1, n do
  local b = 4 + (i - 1) * 6
  local kind = tonumber(ARGV[b + 1])
  local limit = tonumber(ARGV[b + 2])
  local amount = tonumber(ARGV[b + 3])
  if kind == 1 then
    local per = tonumber(ARGV[b + 4])
    local burst = tonumber(ARGV[b + 5])
    local tat = tatOf(KEYS[i], now)
    local over = tat + amount * per - now - burst * per
    if amount > burst then return {i, '-1', string.format('%.3f', tat)} end
    if over > 0.000001 then return {i, string.format('%.3f', over), string.format('%.3f', tat)} end
    vals[i] = tat + amount * per
  else
    local cur = math.max(0, tonumber(redis.call('GET', KEYS[i]) or '0'))
    if cur + amount > limit then return {i, '0', string.format('%.0f', cur)} end
    vals[i] = cur + amount
  end
end
local out = {0}
for i = 1, n do
  local b = 4 + (i - 1) * 6
  local kind = tonumber(ARGV[b + 1])
  local amount = tonumber(ARGV[b + 3])
  if kind == 1 then
    if amount ~= 0 then setTat(KEYS[i], vals[i], ARGV[b + 4], now) end
    out[i + 1] = string.format('%.3f', vals[i])
  else
    if amount ~= 0 then
      vals[i] = redis.call('INCRBY', KEYS[i], amount)
      redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[b + 6]))
    end
    out[i + 1] = string.format('%.0f', vals[i])
  end
end
mark(mk, ARGV[3], ARGV[4])
return out
`;

/**
 * Moves a rate's arrival time by `delta` units (never behind now). KEYS: counter, mark block.
 * ARGV: now, delta, ms per unit, mark bit, mark ttl. Returns the arrival time, or nil if marked.
 */
export const SETTLE_RATE_LUA = `${MARKS}
if marked(KEYS[2], ARGV[4]) then return false end
local now = tonumber(ARGV[1])
local tat = math.max(now, tatOf(KEYS[1], now) + tonumber(ARGV[2]) * tonumber(ARGV[3]))
setTat(KEYS[1], tat, ARGV[3], now)
mark(KEYS[2], ARGV[4], ARGV[5])
return string.format('%.3f', tat)
`;

/**
 * Adds a delta to a calendar bucket, keeping its expiry (or giving it one: a zero reserve made
 * none). KEYS: counter, mark block. ARGV: delta, ttl ms, mark bit, mark ttl. Returns the count,
 * or nil if marked.
 */
export const SETTLE_COUNT_LUA = `${MARKS}
if marked(KEYS[2], ARGV[3]) then return false end
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
mark(KEYS[2], ARGV[3], ARGV[4])
return string.format('%.0f', v)
`;

/**
 * A write-back's first step: sets the marks of the commands that timed out and says which were
 * set already (those commands reached Redis). Idempotent: the answer is kept under KEYS[1] and a
 * repeat returns it. KEYS: the answer's key, then mark blocks. ARGV: ttl ms, then per command
 * (index of its block in KEYS, bit). Returns one character per command, '1' if it had run.
 */
export const CLAIM_LUA = `
local done = redis.call('GET', KEYS[1])
if done then return done end
local out = {}
for i = 1, (#ARGV - 1) / 2 do
  local k = KEYS[tonumber(ARGV[2 * i])]
  out[i] = tostring(redis.call('SETBIT', k, ARGV[2 * i + 1], 1))
  if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, ARGV[1]) end
end
local s = table.concat(out)
redis.call('SET', KEYS[1], s, 'PX', ARGV[1])
return s
`;

/**
 * A write-back's second step, once per chunk of counters (the chunk's own mark makes a repeat do
 * nothing). KEYS: N counters, then the mark block. ARGV: N, now, mark bit, mark ttl, then per
 * counter (kind, units, ms per unit, ttl ms). Returns {0, value per counter}, or {-1} if marked.
 */
export const APPLY_LUA = `${MARKS}
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local mk = KEYS[n + 1]
if marked(mk, ARGV[3]) then return {-1} end
local out = {0}
for i = 1, n do
  local b = 4 + (i - 1) * 4
  if tonumber(ARGV[b + 1]) == 1 then
    local tat = math.max(now, tatOf(KEYS[i], now) + tonumber(ARGV[b + 2]) * tonumber(ARGV[b + 3]))
    if tat > now then setTat(KEYS[i], tat, ARGV[b + 3], now) end
    out[i + 1] = string.format('%.3f', tat)
  else
    local v = redis.call('INCRBY', KEYS[i], ARGV[b + 2])
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[b + 4]) end
    out[i + 1] = string.format('%.0f', v)
  end
end
mark(mk, ARGV[3], ARGV[4])
return out
`;

export type Reply = (number | string)[];

export interface QuotaCommands {
  syReserve(...args: (string | number)[]): Promise<Reply>;
  sySettleRate(
    key: string,
    mark: string,
    now: number,
    delta: number,
    per: number,
    bit: number,
    markTtl: number,
  ): Promise<string | null>;
  sySettleCount(
    key: string,
    mark: string,
    delta: number,
    ttlMs: number,
    bit: number,
    markTtl: number,
  ): Promise<string | null>;
  syClaim(...args: (string | number)[]): Promise<string>;
  syApply(...args: (string | number)[]): Promise<Reply>;
}

/** Registers the scripts as commands on a connection. */
export function defineQuotaCommands(redis: {
  defineCommand(name: string, def: { lua: string; numberOfKeys?: number }): void;
}): void {
  redis.defineCommand('syReserve', { lua: RESERVE_LUA });
  redis.defineCommand('sySettleRate', { numberOfKeys: 2, lua: SETTLE_RATE_LUA });
  redis.defineCommand('sySettleCount', { numberOfKeys: 2, lua: SETTLE_COUNT_LUA });
  redis.defineCommand('syClaim', { lua: CLAIM_LUA });
  redis.defineCommand('syApply', { lua: APPLY_LUA });
}
