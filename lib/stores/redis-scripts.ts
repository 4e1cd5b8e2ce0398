import { createHash } from 'node:crypto';
import type { AlgorithmName } from '../types.js';

/*
 * One decision script per algorithm family, sharing a prelude and an
 * epilogue. Each mirrors lib/algorithms/*.ts line for line: the conformance
 * suite runs the same hits through both stores and expects equal answers.
 *
 * One key (a rule, or a limiter with one policy):
 * KEYS[1]  the counter hash: fields a, b, c (see CounterState) and r, the
 *          Redis time of the last reset (views taken before it are stale)
 * ARGV[1]  limit            ARGV[2]  window ms
 * ARGV[3]  now in ms, or '' to use Redis TIME
 * ARGV[4]  cost (0 = read only; negative = refund that many units, then read)
 * ARGV[5]  absent when the caller holds no state for the key; -2 - floor when
 *          it holds only a view and no local units (the hot path): the script
 *          answers { -1 } without deciding if what it stores falls below that
 *          floor (a data loss, or a refund elsewhere), and the caller sends the
 *          whole view; else how long ago (ms, caller's clock) it last saw the
 *          key in Redis, or -1 if never. Then ARGV[6..] carry that state, all
 *          times as ages so that no clock skew estimate is needed (see each
 *          family below).
 * Returns  { allowed 0|1, remaining, resetAt, retryAfterMs, now, a, b, c,
 *            1 if the key holds live state after the call }
 *
 * Several keys (policies: "10 per second and 1000 per day", one hash tag):
 * ARGV[1] now or '', ARGV[2] cost, then per key a group: its length n, then
 * limit, window and n - 2 continuity arguments (as ARGV[5..] above). Every
 * key is decided without counting first; only if all admit are the units
 * counted in each, so a request one policy denies consumes in none. A
 * refund gives back in every key. Returns the nine values above per key, in
 * KEYS order, or { -1 } if any key needs its whole view.
 *
 * The merge is what keeps counts continuous across outages and Redis data
 * loss: stored = max(0, max(stored, known) - refunded) + admitted, where
 * `known` is the count the caller last saw in Redis, and `refunded` and
 * `admitted` what it refunded and admitted from memory since (refunds first:
 * they give back units counted before them, never hits made after them).
 * `known` restores what Redis lost (restart, FLUSHDB, eviction, a failover to
 * a replica that missed writes); max() keeps it from double-counting what
 * Redis still has; `local` is added exactly once because the caller forgets
 * it only after this script acknowledged it, and sends it from one call at a
 * time per key.
 */
/**
 * Lua setting `now` (ms) from ARGV[arg], or from Redis TIME when the caller
 * left it empty: Redis's clock is the one every instance shares.
 */
export function redisNow(arg: number): string {
  return `local now = tonumber(ARGV[${arg}])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end`;
}

// A family's body runs as step(): it decides one key without writing and
// returns what commit() writes, or nil when the key needs the whole view.
// V(i) reads what was ARGV[i] of the one-key layout, for any key's group.
// `dry` decides without counting (the first pass over several keys).
const PRELUDE = `
local function step(key, limit, window, now, cost, A, o, m, dry, pre)
local function V(i) return A[o + i - 4] end
local s = pre or redis.call('HMGET', key, 'a', 'b', 'c', 'r')
local a = tonumber(s[1]) or 0
local b = tonumber(s[2]) or 0
local c = tonumber(s[3]) or 0
local r = tonumber(s[4]) or 0
local live = 0
-- The caller's view is stale when the key was reset after it was taken.
local viewed = m > 0
-- The hot path's one-number check of a view: its count or debt.
local floor = nil
if viewed and tonumber(V(5)) <= -2 then
  floor = -2 - tonumber(V(5))
  viewed = false
end
local known = false
local stale = false
if viewed then
  local age = tonumber(V(5))
  stale = age >= 0 and now - age < r
  known = age >= 0 and not stale
end
-- A read (cost 0) answers for a request of one unit, without counting it.
local units = math.max(cost, 1)
local allowed = false
local merged = false
local refunded = false
local remaining, resetAt, retry, expiresAt
-- 'incr' when only the count moves within a window already stored, so the
-- common hit costs one HINCRBY; 'set' rewrites the state and its expiry.
local write = false`;

// After a family's merge: the first pass over several keys keeps the merged
// state for the second, which then reads no key again.
const SNAPSHOT = `local snap = nil
if dry then
  snap = { false, b, c, r }
  if s[1] or merged then snap[1] = a end
end`;

const EPILOGUE = `
return { allowed = allowed, remaining = remaining, resetAt = resetAt, retry = retry,
  a = a, b = b, c = c, r = r, live = live, write = write, merged = merged,
  refunded = refunded, expiresAt = expiresAt, cost = cost, snap = snap }
end

-- Writes what step() decided; returns the reply's allowed and live flags.
local function commit(key, now, window, d)
  local write = d.write
  if d.merged or d.refunded then write = 'set' end
  if write == 'incr' then
    redis.call('HINCRBY', key, 'a', d.cost)
  elseif write then
    redis.call('HSET', key, 'a', d.a, 'b', d.b, 'c', d.c)
    local r = d.r
    -- A refund, like a reset, makes every view taken before it stale.
    if d.refunded then
      r = now
      redis.call('HSET', key, 'r', r)
    end
    local expiresAt = d.expiresAt
    -- A reset marker must outlive every view that predates it.
    if r > 0 then expiresAt = math.max(expiresAt, r + 2 * window) end
    -- A second of slack: the script decides from the stored times, so expiry
    -- is only clean-up and must not race a test clock that runs slow.
    redis.call('PEXPIRE', key, math.max(1, expiresAt - now) + 1000)
  end
  local live = d.live
  if d.merged or write then live = 1 end
  local ok = 0
  if d.allowed then ok = 1 end
  return ok, live
end

if #KEYS == 1 then
  ${redisNow(3)}
  local window = tonumber(ARGV[2])
  local d = step(KEYS[1], tonumber(ARGV[1]), window, now, tonumber(ARGV[4]), ARGV, 4, #ARGV - 4, false)
  if not d then return { -1 } end
  local ok, live = commit(KEYS[1], now, window, d)
  return { ok, d.remaining, d.resetAt, d.retry, now, d.a, d.b, d.c, live }
end

${redisNow(1)}
local cost = tonumber(ARGV[2])
local groups = {}
local all = true
local p = 3
for i = 1, #KEYS do
  local n = tonumber(ARGV[p])
  local g = { limit = tonumber(ARGV[p + 1]), window = tonumber(ARGV[p + 2]) }
  -- Nothing is written until every key has been looked at: a key that
  -- needs its whole view makes the caller send the same call again.
  g.d = step(KEYS[i], g.limit, g.window, now, cost, ARGV, p + 2, n - 2, true)
  if not g.d then return { -1 } end
  if not g.d.allowed then all = false end
  groups[i] = g
  p = p + 1 + n
end
local out = {}
for i = 1, #KEYS do
  local g = groups[i]
  local d = g.d
  local ok, live = commit(KEYS[i], now, g.window, d)
  if all and cost > 0 then
    -- Every key admits: count the units, from the state just merged (as
    -- the first pass left it, not read again).
    d = step(KEYS[i], g.limit, g.window, now, cost, ARGV, 0, 0, false, d.snap)
    ok, live = commit(KEYS[i], now, g.window, d)
  end
  for _, v in ipairs({ ok, d.remaining, d.resetAt, d.retry, now, d.a, d.b, d.c, live }) do
    out[#out + 1] = v
  end
end
return out`;

/*
 * Fixed window. State: a = count, b = window start (Redis ms).
 * V(6) the caller's count for its live window (seen in Redis, then local)
 * V(7) how long ago that window started (ms)
 * V(8), V(9) units the caller admitted and refunded locally in it,
 *                  unacknowledged
 * V(10) 1 if the caller's memory opened that window itself (Redis could
 *          not be reached), 0 if it is Redis's window as last seen
 * V(11) Redis's own start of that window when it is Redis's (exact across a
 *          data loss, where an age arrives a transit late), else 0
 */
const FIXED_WINDOW = `${PRELUDE}
if s[1] and now < b + window then live = 1 end
if floor and (live == 0 or a < floor) then return nil end
if viewed then
  local count = tonumber(V(6))
  local start = now - tonumber(V(7))
  local seenStart = tonumber(V(11)) or 0
  if seenStart > 0 then start = seenStart end
  local mine, back = tonumber(V(8)), tonumber(V(9))
  local seen = 0
  if known then seen = math.max(0, count - mine + back) end
  -- A live window is restored even at count 0 (refunded): its start still
  -- counts, unless a reset since the view was taken ended it. A window that
  -- began before a reset is never restored over the reset's marker: its
  -- early end would open the next window early.
  if now < start + window and (live == 1 or s[1] or start >= r)
    and (seen > 0 or mine > 0 or back > 0 or (live == 0 and not stale)) then
    local base, start2 = seen, start
    if live == 1 then
      base = math.max(a, seen)
      -- Redis's own window keeps its start: the caller's copy of it reads a
      -- transit later. One memory opened on its own, while Redis's older one
      -- lives, ends later: the merged count lives until then, so neither
      -- window's hits are forgotten early.
      start2 = b
      if V(10) == '1' and start > b then start2 = start end
    end
    local count2 = math.max(0, base - back) + mine
    if count2 ~= a or start2 ~= b then
      a = count2
      b = start2
      merged = true
    end
  end
end
${SNAPSHOT}
if cost < 0 then
  if b > 0 and now < b + window then
    a = math.max(0, a + cost)
    refunded = true
  end
  cost = 0
  units = 1
end
local fresh = false
-- A window lives its whole length, even when refunds brought it to 0.
if b == 0 or now >= b + window then
  a = 0
  b = now
  fresh = true
end
resetAt = b + window
retry = 0
if a + units > limit then
  remaining = math.max(0, limit - a)
  retry = resetAt - now
elseif cost == 0 or dry then
  allowed = true
  remaining = limit - a
else
  a = a + cost
  allowed = true
  remaining = limit - a
  write = fresh and 'set' or 'incr'
end
expiresAt = b + window
${EPILOGUE}`;

/*
 * Sliding window (aligned windows, weighted previous count).
 * State: a = current count, b = current window start, c = previous count.
 * V(6), V(7)   the caller's current and previous window counts (seen in
 *                    Redis, then local), by window index relative to now
 * V(8), V(9)   units the caller admitted locally in each, unacknowledged
 * V(10), V(11) units it refunded locally in each, unacknowledged
 */
const SLIDING_WINDOW = `${PRELUDE}
local start = now - (now % window)
local cur, prev = 0, 0
local fresh = true
-- A window from the future (a clock that went back) is still the current one.
if b >= start and s[1] then
  cur = a
  prev = c
  fresh = b ~= start
elseif b == start - window then
  prev = a
end
if s[1] and now < b + 2 * window then live = 1 end
if floor and cur + prev < floor then return nil end
if viewed then
  local mineCur, minePrev = tonumber(V(8)), tonumber(V(9))
  local backCur, backPrev = tonumber(V(10)), tonumber(V(11))
  local seenCur, seenPrev = 0, 0
  if known then
    seenCur = math.max(0, tonumber(V(6)) - mineCur + backCur)
    seenPrev = math.max(0, tonumber(V(7)) - minePrev + backPrev)
  end
  local nextCur = math.max(0, math.max(cur, seenCur) - backCur) + mineCur
  local nextPrev = math.max(0, math.max(prev, seenPrev) - backPrev) + minePrev
  if nextCur ~= cur or nextPrev ~= prev then
    cur = nextCur
    prev = nextPrev
    a = cur
    b = start
    c = prev
    merged = true
  end
end
${SNAPSHOT}
if cost < 0 then
  -- Only the current window's count: a refund never reaches an ended window.
  if cur > 0 then
    cur = math.max(0, cur + cost)
    a = cur
    b = start
    c = prev
    refunded = true
  end
  cost = 0
  units = 1
end
local used = cur + math.ceil(prev * (window - (now - start)) / window)
resetAt = start + window
retry = 0
if used + units > limit then
  remaining = math.max(0, limit - used)
  local room = limit - cur - units
  local at = nil
  if room >= 0 and prev > 0 then
    at = start + window - math.floor(room * window / prev)
    if at <= now then at = nil end
  end
  if at then
    retry = at - now
  else
    if cur > 0 then
      at = start + 2 * window - math.floor((limit - units) * window / cur)
    else
      at = start + window
    end
    retry = math.max(1, math.max(at, start + window) - now)
  end
  -- A denial resets when the request could pass (as sliding-window.ts).
  resetAt = now + retry
elseif cost == 0 or dry then
  allowed = true
  remaining = limit - used
else
  a = cur + cost
  b = start
  c = prev
  allowed = true
  remaining = limit - used - cost
  write = fresh and 'set' or 'incr'
end
expiresAt = b + 2 * window
${EPILOGUE}`;

/*
 * Token bucket as GCRA. State: a = TAT (Redis ms), b = remainder in 1/limit ms.
 * V(6) how far the caller's TAT lies ahead of its now (whole ms; <= 0: full)
 * V(7) the caller's remainder (1/limit ms)
 * V(8), V(9) units the caller admitted and refunded locally,
 *                  unacknowledged
 * Debts are compared in 1/limit ms relative to now, which stays exact in a
 * double for any window and limit a rule can have. An age reaches the script
 * a transit time late, so a view reads up to that much too high: it restores
 * a stored debt only when it exceeds it by more than one unit (a denial at
 * the exact boundary is not worth a transit's error).
 */
const TOKEN_BUCKET = `${PRELUDE}
if s[1] and (now < a or (now == a and b > 0)) then live = 1 end
if floor then
  -- The floor is the caller's debt in ms: one unit's slack, as below, for a
  -- debt Redis still holds.
  if live == 0 or a - now + window / limit < floor then return nil end
end
if viewed then
  local ahead = math.max(0, tonumber(V(6)) * limit + tonumber(V(7)))
  local back = tonumber(V(9)) * window
  if ahead > 0 or back > 0 then
    -- Local hits count only for the part of the debt that has not refilled.
    local mine = math.min(tonumber(V(8)) * window, ahead)
    local stored = 0
    if live == 1 then stored = (a - now) * limit + b end
    local seen = 0
    if known then seen = math.max(0, ahead - mine + back) end
    if live == 1 and seen <= stored + window then seen = 0 end
    local debt = math.max(0, math.max(stored, seen) - back) + mine
    if debt ~= stored then
      a = now + math.floor(debt / limit)
      b = debt % limit
      merged = true
    end
  end
end
${SNAPSHOT}
if cost < 0 then
  if live == 1 or merged then
    local debt = math.max(0, (a - now) * limit + b + cost * window)
    a = now + math.floor(debt / limit)
    b = debt % limit
    refunded = true
  end
  cost = 0
  units = 1
end
local tat, frac = a, b
if tat < now or (tat == now and frac == 0) then
  tat = now
  frac = 0
end
local capacity = window * limit
local prior = (tat - now) * limit + frac
local nextFrac = frac + units * window
local nextTat = tat + math.floor(nextFrac / limit)
nextFrac = nextFrac % limit
local backlog = (nextTat - now) * limit + nextFrac
retry = 0
if backlog > capacity then
  local retryAt = nextTat - window + math.ceil(nextFrac / limit)
  remaining = math.max(0, math.floor((capacity - prior) / window))
  resetAt = retryAt
  retry = retryAt - now
elseif cost == 0 or dry then
  allowed = true
  remaining = math.floor((capacity - prior) / window)
  resetAt = tat
  if frac > 0 then resetAt = tat + 1 end
else
  allowed = true
  remaining = math.floor((capacity - backlog) / window)
  a = nextTat
  b = nextFrac
  resetAt = a
  if b > 0 then resetAt = a + 1 end
  write = 'set'
end
expiresAt = a
if b > 0 then expiresAt = a + 1 end
${EPILOGUE}`;

/**
 * Forgets keys and leaves on each a reset marker (field r, Redis time) that
 * outlives every view of the key an instance may still hold, so no instance
 * restores the count it saw before the reset.
 *
 * KEYS[1..n] the counter hashes (a limiter's policies); ARGV[1] now in ms or
 * ''; ARGV[1 + i] the window (ms) of KEYS[i].
 */
const RESET = `
${redisNow(1)}
for i = 1, #KEYS do
  redis.call('DEL', KEYS[i])
  redis.call('HSET', KEYS[i], 'r', now)
  redis.call('PEXPIRE', KEYS[i], 2 * tonumber(ARGV[i + 1]) + 1000)
end
return 1`;

// Whitespace folded, so the SHA does not depend on indentation; comments
// dropped, so editing one does not change what Redis caches.
function fold(source: string): string {
  return source
    .split('\n')
    .map(line => line.trim())
    .filter(line => line !== '' && !line.startsWith('--'))
    .join('\n');
}

/** A script's text and the SHA1 that EVALSHA names it by. */
export type Script = { readonly source: string; readonly sha: string };

function script(source: string): Script {
  const folded = fold(source);
  return { source: folded, sha: createHash('sha1').update(folded).digest('hex') };
}

/** The decision script of each algorithm. */
export const DECIDE_SCRIPTS: Readonly<Record<AlgorithmName, Script>> = {
  'fixed-window': script(FIXED_WINDOW),
  'sliding-window': script(SLIDING_WINDOW),
  'token-bucket': script(TOKEN_BUCKET),
};

export const RESET_SCRIPT = script(RESET);

/** Every script, for loading on each `ready`. */
export const ALL_SCRIPTS: readonly Script[] = [...Object.values(DECIDE_SCRIPTS), RESET_SCRIPT];
