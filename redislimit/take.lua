-- keyward's rate limits for one request, as rate.Memory decides them, on
-- Redis's clock. KEYS: the organization's hash (fields "tat" and "rate" of
-- its per-second bucket; "sum" and "head" of its quota: the requests
-- counted in the last 60 seconds and the newest second counted; one field
-- per second, named by the Unix second, with that second's count; and
-- "zx", the time in ms until which the in-flight set is known to live),
-- its in-flight sorted set (slot -> expiry in ms), and the key's hash
-- ("sum", "head" and the seconds) when the key has a quota of its own.
-- ARGV: per-second rate, per-minute quota, in-flight cap, the key's quota
-- (0: none), the Store's name, the slot's name, the slot TTL in ms, the
-- bucket's capacity (its burst, in requests), then the names of this
-- Store's slots of this organization given back since (removed first; the
-- first may be the new slot's). A slot is STORE:NAME
-- in the set. Times are in microseconds. A request reads and writes a few
-- fields, whatever the traffic; only a refusal by a quota reads its 60
-- seconds.
--
-- An admitted request runs TIME, HMGET, ZADD, ZCOUNT and HSET (and ZREM
-- of the slots given back, but for the one whose name it takes; with a
-- key quota, HMGET and HSET of the key's hash too). The upkeep runs once a
-- second, on the request that moves the organization's quota to a new
-- second (or changes its bucket's rate): it deletes the seconds that left
-- the window, purges the expired slots and moves the hash's expiry on (a
-- minute past that second, or past the bucket's debt; a key's hash
-- likewise, on the request that moves its quota). The set's expiry moves
-- at most once a second, when "zx" says it might not outlive the new slot.
-- Only live leases are counted in flight: one expired and not yet purged
-- counts for nothing.
-- Returns {refused (0 none, 1 rps, 2 rpm, 3 key, 4 concurrency),
-- bucket remaining, bucket reset, wait, quota remaining, quota reset,
-- key remaining, key reset, in flight}.
-- Strings of digits become numbers in arithmetic (x + 0), at half the
-- cost of tonumber; a field that does not exist is false: (x or 0) + 0.
local rps, rpm, conc, krpm = ARGV[1] + 0, ARGV[2] + 0, ARGV[3] + 0, ARGV[4] + 0
local owner, ttl, burst = ARGV[5], ARGV[7] + 0, ARGV[8] + 0
local t = redis.call('TIME')
local sec = t[1] + 0
local now = sec * 1000000 + t[2]
local nowms = math.floor(now / 1000)

-- Numbers go to Redis as integers, never in exponent form.
local function int(x) return string.format('%d', x) end

-- A quota's state at sec, from its fields sum and head (v[1], v[2]): the
-- seconds that left the window since head are subtracted and deleted.
-- Returns sum, head (a second before head, from a clock that stepped back,
-- counts in head), and whether head moved on (or the quota is new): the
-- state must then be written, and the key's expiry moved on.
local function quota(key, v)
  local sum, head = (v[1] or 0) + 0, v[2] and v[2] + 0
  local moved = not head or sec > head
  head = head or sec
  if sum > 0 and sec > head then
    local left = {}
    for s = head - 59, math.min(head, sec - 60) do left[#left + 1] = int(s) end
    if #left > 0 then
      for _, c in ipairs(redis.call('HMGET', key, unpack(left))) do sum = sum - (tonumber(c) or 0) end
      redis.call('HDEL', key, unpack(left))
    end
  end
  if sum <= 0 then sum = 0 end
  return sum, math.max(head, sec), moved
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

-- The current second's count (field t[1]) is read here and written with
-- the state, unless a clock that stepped back counts in a later head.
local b = redis.call('HMGET', KEYS[1], 'sum', 'head', 'tat', 'rate', t[1], 'zx')
local tat, rate = (b[3] or 0) + 0, (b[4] or 0) + 0
if rate ~= 0 and rate ~= rps and tat > now then
  -- A plan changed: the tokens lacking stay lacking, at the new rate.
  tat = now + math.ceil((tat - now) / interval(rate)) * interval(rps)
end
local iv = interval(rps)
local cap = burst * iv
local nxt = math.max(tat, now) + iv
local msum, mhead, mmoved = quota(KEYS[1], b)
-- The hash's state and expiry are written when a second begins, or the
-- bucket changes rate: between, its expiry covers every request's.
local upkeep = mmoved or rate ~= rps
local k = {}
local ksum, khead, kmoved = 0, sec, false
if krpm > 0 then
  k = redis.call('HMGET', KEYS[3], 'sum', 'head', t[1])
  ksum, khead, kmoved = quota(KEYS[3], k)
end
local refused, wait = 0, 0
if nxt - now > cap then
  refused, wait = 1, nxt - now - cap
elseif msum >= rpm then
  refused, wait = 2, untilOut(KEYS[1], mhead, msum - rpm + 1)
elseif krpm > 0 and ksum >= krpm then
  refused, wait = 3, untilOut(KEYS[3], khead, ksum - krpm + 1)
end

-- The in-flight cap. A request the other limits let through takes its
-- slot first, and gives it back if the cap refuses it: so the slots given
-- back, removed next, never empty the set it joins, which keeps its
-- expiry. A slot named as the first one given back is that lease, moved
-- on for the new request.
local member = owner .. ':' .. ARGV[6]
local added, first = 0, 9
if refused == 0 then
  added = redis.call('ZADD', KEYS[2], int(nowms + ttl), member)
  if ARGV[9] == ARGV[6] then first = 10 end
end
local removed = 0
if #ARGV >= first then
  local given = {}
  for i = first, #ARGV do given[#given + 1] = owner .. ':' .. ARGV[i] end
  removed = redis.call('ZREM', KEYS[2], unpack(given))
end
-- Only live leases count: one that expired (its process died) is no one's.
-- The set existed before this script if it holds a live lease that is not
-- the one just added, or a slot given back was in it.
local inflight = redis.call('ZCOUNT', KEYS[2], '(' .. int(nowms), '+inf')
local existed = inflight - added + removed > 0
if refused == 0 then inflight = inflight - 1 end
if upkeep then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(nowms)) end
if refused == 0 and inflight >= conc then
  refused, wait = 4, 1000000
  redis.call('ZREM', KEYS[2], member)
end

-- The organization's hash lives while its bucket owes or its quota counts:
-- set when a second begins, a minute past it.
local function keep(upto)
  redis.call('PEXPIRE', KEYS[1], int(math.max(61000, math.ceil((upto - now) / 1000) + 1000)))
end

if refused ~= 0 then
  if upkeep then
    redis.call('HSET', KEYS[1], 'tat', int(tat), 'rate', int(rps), 'sum', int(msum), 'head', int(mhead))
    keep(tat)
  end
  -- A key's hash that does not exist is not made by a refusal.
  if kmoved and k[2] then
    redis.call('HSET', KEYS[3], 'sum', int(ksum), 'head', int(khead))
    redis.call('EXPIRE', KEYS[3], 61)
  end
  local kr, kt = 0, 0
  if krpm > 0 then kr, kt = math.max(krpm - ksum, 0), reset(ksum, khead) end
  if refused == 3 then kt = wait; kr = 0 end
  local mt = reset(msum, mhead)
  if refused == 2 then mt = wait end
  return {refused, refused == 1 and 0 or math.floor((cap - math.max(tat - now, 0)) / iv), math.max(tat - now, 0), wait,
    math.max(rpm - msum, 0), mt, kr, kt, inflight}
end

-- Counts one request in a quota's hash (the organization's, with fields
-- of its own first): its sum, head when it moved, and the count of
-- second head (current: that second's field as read, when head is now).
local function count(key, sum, head, moved, current, fields)
  fields[#fields + 1], fields[#fields + 2] = 'sum', int(sum + 1)
  if moved then fields[#fields + 1], fields[#fields + 2] = 'head', int(head) end
  if head == sec then
    fields[#fields + 1], fields[#fields + 2] = t[1], int((current or 0) + 1)
  else
    redis.call('HINCRBY', key, int(head), 1)
  end
  redis.call('HSET', key, unpack(fields))
end

-- The set lives as long as its newest slot and a second more. A set that
-- did not exist has no expiry yet. Else "zx" says how long it lives at
-- least; when that is too short, its expiry is read and moved on (never
-- shortened: instances with a longer SlotTTL share it), a second further
-- than needed, so that this runs at most once a second.
local fields = {'tat', int(nxt)}
if upkeep then fields[3], fields[4] = 'rate', ARGV[1] end
local zx = (b[6] or 0) + 0
if not existed or zx < nowms + ttl + 1000 then
  local left = -1
  if existed then left = redis.call('PTTL', KEYS[2]) end
  if left < ttl + 2000 then
    left = ttl + 2000
    redis.call('PEXPIRE', KEYS[2], int(left))
  end
  fields[#fields + 1], fields[#fields + 2] = 'zx', int(nowms + left)
end
count(KEYS[1], msum, mhead, upkeep, b[5], fields)
if upkeep then keep(nxt) end
local kr, kt = 0, 0
if krpm > 0 then
  count(KEYS[3], ksum, khead, kmoved, k[3], {})
  if kmoved then redis.call('EXPIRE', KEYS[3], 61) end
  kr, kt = krpm - ksum - 1, reset(1, khead)
end
return {0, math.floor((cap - (nxt - now)) / iv), nxt - now, 0, rpm - msum - 1, reset(1, mhead), kr, kt, inflight + 1}
