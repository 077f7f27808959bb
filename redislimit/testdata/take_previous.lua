-- take.lua as the previous release runs it (ARGV: ..., the slot's full
-- name, the slot TTL, the full names of the slots given back): for
-- TestPreviousScriptSharesItsState, since a deploy runs both at once for a
-- moment.
-- keyward's rate limits for one request, as rate.Memory decides them, on
-- Redis's clock. KEYS: the organization's hash (fields "tat" and "rate" of
-- its per-second bucket; "sum" and "head" of its quota: the requests
-- counted in the last 60 seconds and the newest second counted; and one
-- field per second, named by the Unix second, with that second's count),
-- its in-flight sorted set (slot -> expiry in ms), and the key's hash
-- ("sum", "head" and the seconds) when the key has a quota of its own.
-- ARGV: per-second rate, per-minute quota, in-flight cap, the key's quota
-- (0: none), the slot's name, the slot TTL in ms, then slots of this
-- organization given back since (removed first). Times are in
-- microseconds. A request reads and writes a few fields, whatever the
-- traffic; only a refusal by a quota reads its 60 seconds.
-- Returns {refused (0 none, 1 rps, 2 rpm, 3 key, 4 concurrency),
-- bucket remaining, bucket reset, wait, quota remaining, quota reset,
-- key remaining, key reset, in flight}.
local rps, rpm, conc, krpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local member, ttl = ARGV[5], tonumber(ARGV[6])
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000000 + tonumber(t[2])
local nowms = math.floor(now / 1000)

-- Numbers go to Redis as integers, never in exponent form.
local function int(x) return string.format('%d', x) end

-- A quota's state at sec: the seconds that left the window since its
-- newest are subtracted and deleted. Returns sum and head (a second
-- before head, from a clock that stepped back, counts in head).
local function quota(key, v)
  local sum, head = tonumber(v[1]) or 0, tonumber(v[2]) or sec
  if sum > 0 and sec > head then
    local left = {}
    for s = head - 59, math.min(head, sec - 60) do left[#left + 1] = int(s) end
    if #left > 0 then
      for _, c in ipairs(redis.call('HMGET', key, unpack(left))) do sum = sum - (tonumber(c) or 0) end
      redis.call('HDEL', key, unpack(left))
    end
  end
  if sum <= 0 then sum = 0 end
  return sum, math.max(head, sec)
end

-- How long until the oldest n requests counted in key's window have left
-- it (a minute if fewer are counted): read only on a refusal.
local function untilOut(key, head, n)
  local names = {}
  for s = head - 59, head do names[#names + 1] = int(s) end
  local left = 0
  for i, c in ipairs(redis.call('HMGET', key, unpack(names))) do
    left = left + (tonumber(c) or 0)
    if left >= n then return math.max((head - 60 + i + 60) * 1000000 - now, 0) end
  end
  return 60000000
end

-- When the newest request counted leaves the window.
local function reset(sum, head)
  if sum == 0 then return 60000000 end
  return math.max((head + 60) * 1000000 - now, 0)
end

local function interval(r) return math.ceil(1000000 / r) end

local b = redis.call('HMGET', KEYS[1], 'sum', 'head', 'tat', 'rate')
local tat, rate = tonumber(b[3]) or 0, tonumber(b[4]) or 0
if rate ~= 0 and rate ~= rps and tat > now then
  -- A plan changed: the tokens lacking stay lacking, at the new rate.
  tat = now + math.ceil((tat - now) / interval(rate)) * interval(rps)
end
local iv = interval(rps)
local cap = rps * iv
local nxt = math.max(tat, now) + iv
local msum, mhead = quota(KEYS[1], b)
local ksum, khead = 0, sec
if krpm > 0 then ksum, khead = quota(KEYS[3], redis.call('HMGET', KEYS[3], 'sum', 'head')) end
if #ARGV > 6 then redis.call('ZREM', KEYS[2], unpack(ARGV, 7)) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(nowms))
local inflight = redis.call('ZCARD', KEYS[2])

local refused, wait = 0, 0
if nxt - now > cap then
  refused, wait = 1, nxt - now - cap
elseif msum >= rpm then
  refused, wait = 2, untilOut(KEYS[1], mhead, msum - rpm + 1)
elseif krpm > 0 and ksum >= krpm then
  refused, wait = 3, untilOut(KEYS[3], khead, ksum - krpm + 1)
elseif inflight >= conc then
  refused, wait = 4, 1000000
end

-- The organization's hash lives while its bucket owes or its quota counts.
local function keep(upto)
  redis.call('PEXPIRE', KEYS[1], int(math.max(61000, math.ceil((upto - now) / 1000) + 1000)))
end

if refused ~= 0 then
  redis.call('HSET', KEYS[1], 'tat', int(tat), 'rate', int(rps), 'sum', int(msum), 'head', int(mhead))
  keep(tat)
  if krpm > 0 then redis.call('HSET', KEYS[3], 'sum', int(ksum), 'head', int(khead)) end
  local kr, kt = 0, 0
  if krpm > 0 then kr, kt = math.max(krpm - ksum, 0), reset(ksum, khead) end
  if refused == 3 then kt = wait; kr = 0 end
  local mt = reset(msum, mhead)
  if refused == 2 then mt = wait end
  return {refused, refused == 1 and 0 or math.floor((cap - math.max(tat - now, 0)) / iv), math.max(tat - now, 0), wait,
    math.max(rpm - msum, 0), mt, kr, kt, inflight}
end

redis.call('HINCRBY', KEYS[1], int(mhead), 1)
redis.call('HSET', KEYS[1], 'tat', int(nxt), 'rate', int(rps), 'sum', int(msum + 1), 'head', int(mhead))
keep(nxt)
local kr, kt = 0, 0
if krpm > 0 then
  redis.call('HINCRBY', KEYS[3], int(khead), 1)
  redis.call('HSET', KEYS[3], 'sum', int(ksum + 1), 'head', int(khead))
  redis.call('EXPIRE', KEYS[3], 61)
  kr, kt = krpm - ksum - 1, reset(1, khead)
end
redis.call('ZADD', KEYS[2], int(nowms + ttl), member)
-- Never shorten the set's life: instances with a longer SlotTTL share it.
if redis.call('PTTL', KEYS[2]) < ttl + 1000 then redis.call('PEXPIRE', KEYS[2], int(ttl + 1000)) end
return {0, math.floor((cap - (nxt - now)) / iv), nxt - now, 0, rpm - msum - 1, reset(1, mhead), kr, kt, inflight + 1}
