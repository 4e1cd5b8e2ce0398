import { createHash } from 'node:crypto';

// Shared by both scripts: the arguments every call carries (ARGV 1-4), the
// time (Redis TIME unless the caller passed one) and the stored state.
const PRELUDE = `
local key = KEYS[1]
local algo = ARGV[1]
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local s = redis.call('HMGET', key, 'a', 'b', 'c')
local a = tonumber(s[1]) or 0
local b = tonumber(s[2]) or 0
local c = tonumber(s[3]) or 0`;

/**
 * One script decides for every algorithm, so there is one SHA to load and one
 * round trip per decision. It mirrors lib/algorithms/*.ts line for line: the
 * conformance suite runs the same hits through both and expects equal answers.
 *
 * KEYS[1]  the counter hash (fields a, b, c: see CounterState)
 * ARGV     algorithm (f|s|t), limit, window ms, now in ms or '' to use
 *          Redis TIME, cost (0 = read only)
 * Returns  { allowed 0|1, remaining, resetAt, retryAfterMs, now, a, b, c,
 *            1 if the key held live state before this call }
 */
const DECIDE_SOURCE = `${PRELUDE}
local cost = tonumber(ARGV[5])
-- Whether the stored state still counts, by the same expiry as the memory store.
local live = 0
if s[1] then
  local until_ = b + window
  if algo == 's' then
    until_ = b + 2 * window
  elseif algo == 't' then
    until_ = a
    if b > 0 then until_ = a + 1 end
  end
  if now < until_ then live = 1 end
end
local allowed = false
local remaining, resetAt, retry, expiresAt
local write = false

-- A read (cost 0) answers for a request of one unit, without counting it.
local units = math.max(cost, 1)
-- 'incr' when only the count moves within a window already stored, so the
-- common hit costs one HINCRBY; 'set' rewrites the state and its expiry.
local fresh = false
if algo == 'f' then
  if a == 0 or now >= b + window then
    a = 0
    b = now
    fresh = true
  end
  resetAt = b + window
  retry = 0
  if a + units > limit then
    remaining = math.max(0, limit - a)
    retry = resetAt - now
  elseif cost == 0 then
    allowed = true
    remaining = limit - a
  else
    a = a + cost
    allowed = true
    remaining = limit - a
    write = fresh and 'set' or 'incr'
  end
  expiresAt = b + window
elseif algo == 's' then
  local start = now - (now % window)
  local cur, prev = 0, 0
  fresh = true
  if b == start then
    cur = a
    prev = c
    fresh = false
  elseif b == start - window then
    prev = a
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
    -- issue 12: a denial resets when it could pass (as sliding-window.ts).
    resetAt = now + retry
  elseif cost == 0 then
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
else
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
  elseif cost == 0 then
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
end

if write == 'incr' then
  redis.call('HINCRBY', key, 'a', cost)
elseif write then
  redis.call('HSET', key, 'a', a, 'b', b, 'c', c)
  -- A second of slack: the script decides from the stored times, so expiry
  -- is only clean-up and must not race a test clock that runs slow.
  redis.call('PEXPIRE', key, math.max(1, expiresAt - now) + 1000)
end
local ok = 0
if allowed then ok = 1 end
return { ok, remaining, resetAt, retry, now, a, b, c, live }
`;

// Whitespace folded, so the SHA does not depend on indentation.
function fold(source: string): string {
  return source
    .split('\n')
    .map(line => line.trim())
    .filter(line => line !== '')
    .join('\n');
}

export const DECIDE_SCRIPT = fold(DECIDE_SOURCE);

export const DECIDE_SHA = createHash('sha1').update(DECIDE_SCRIPT).digest('hex');

/**
 * Adds hits that the memory store admitted during an outage to the Redis
 * counter, without a limit check (they already happened), and only while the
 * window they were counted in is still live.
 *
 * KEYS[1]  the counter hash
 * ARGV     algorithm (f|s|t), limit, window ms, now or '', hits, start of
 *          the window the hits were counted in (Redis time; fixed and sliding)
 * Returns  1 if the hits were added, 0 if their window had passed
 */
const RECONCILE_SOURCE = `${PRELUDE}
local hits = tonumber(ARGV[5])
local hitsStart = tonumber(ARGV[6])
local expiresAt
if algo == 'f' then
  if a > 0 and now < b + window then
    a = a + hits
  elseif now < hitsStart + window then
    a = hits
    b = hitsStart
  else
    return 0
  end
  expiresAt = b + window
elseif algo == 's' then
  local start = now - (now % window)
  local cur, prev = 0, 0
  if b == start then
    cur = a
    prev = c
  elseif b == start - window then
    prev = a
  end
  if hitsStart == start then
    cur = cur + hits
  elseif hitsStart == start - window then
    prev = prev + hits
  else
    return 0
  end
  a = cur
  b = start
  c = prev
  expiresAt = b + 2 * window
else
  if a < now or (a == now and b == 0) then
    a = now
    b = 0
  end
  b = b + hits * window
  a = a + math.floor(b / limit)
  b = b % limit
  expiresAt = a + 1
end
redis.call('HSET', key, 'a', a, 'b', b, 'c', c)
redis.call('PEXPIRE', key, math.max(1, expiresAt - now) + 1000)
return 1
`;

export const RECONCILE_SCRIPT = fold(RECONCILE_SOURCE);
export const RECONCILE_SHA = createHash('sha1').update(RECONCILE_SCRIPT).digest('hex');

export const ALGORITHM_CODES = {
  'fixed-window': 'f',
  'sliding-window': 's',
  'token-bucket': 't',
} as const;
