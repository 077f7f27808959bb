-- keyward's rate limits for one request, as rate.Memory decides them, on
-- Redis's clock. KEYS: the organization's hash (fields "tat" and "rate" of
-- its per-second bucket, and one field per second of its quota), its
-- in-flight sorted set (slot -> expiry in ms), and the key's hash (one
-- field per second) when the key has a quota of its own. ARGV: per-second
-- rate, per-minute quota, in-flight cap, the key's quota (0: none), the
-- slot's name, the slot TTL in ms. Times are in microseconds.
-- Returns {refused (0 none, 1 rps, 2 rpm, 3 key, 4 concurrency),
-- bucket remaining, bucket reset, wait, quota remaining, quota reset,
-- key remaining, key reset, in flight}.
local rps, rpm, conc, krpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local member, ttl = ARGV[5], tonumber(ARGV[6])
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000000 + tonumber(t[2])
local nowms = math.floor(now / 1000)

-- The seconds of a quota still in the window (the last 60), oldest first;
-- the older ones are deleted. Also returns the bucket's fields, if any.
local function window(key)
  local h = redis.call('HGETALL', key)
  local secs, stale, sum, f = {}, {}, 0, {}
  for i = 1, #h, 2 do
    local name, v = h[i], tonumber(h[i + 1])
    local s = tonumber(name)
    if name == 'tat' or name == 'rate' then
      f[name] = v
    elseif s > sec - 60 then
      secs[#secs + 1] = {s, v}
      sum = sum + v
    else
      stale[#stale + 1] = name
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  table.sort(secs, function(a, b) return a[1] < b[1] end)
  return secs, sum, f
end

-- How long until the oldest n requests counted in secs have left the
-- window (a minute if fewer are counted).
local function untilOut(secs, n)
  local left = 0
  for _, b in ipairs(secs) do
    left = left + b[2]
    if left >= n then return math.max((b[1] + 60) * 1000000 - now, 0) end
  end
  return 60000000
end

-- Numbers go to Redis as integers, never in exponent form.
local function int(x) return string.format('%d', x) end

local function interval(r) return math.ceil(1000000 / r) end

local msecs, msum, f = window(KEYS[1])
local tat, rate = f['tat'] or 0, f['rate'] or 0
if rate ~= 0 and rate ~= rps and tat > now then
  -- A plan changed: the tokens lacking stay lacking, at the new rate.
  tat = now + math.ceil((tat - now) / interval(rate)) * interval(rps)
end
local iv = interval(rps)
local cap = rps * iv
local nxt = math.max(tat, now) + iv

local ksecs, ksum = {}, 0
if krpm > 0 then ksecs, ksum = window(KEYS[3]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(nowms))
local inflight = redis.call('ZCARD', KEYS[2])

local refused, wait = 0, 0
if nxt - now > cap then
  refused, wait = 1, nxt - now - cap
elseif msum >= rpm then
  refused, wait = 2, untilOut(msecs, msum - rpm + 1)
elseif krpm > 0 and ksum >= krpm then
  refused, wait = 3, untilOut(ksecs, ksum - krpm + 1)
elseif inflight >= conc then
  refused, wait = 4, 1000000
end

if refused ~= 0 then
  if rate ~= rps then redis.call('HSET', KEYS[1], 'tat', int(tat), 'rate', int(rps)); redis.call('PEXPIRE', KEYS[1], int(math.max(61000, math.ceil((tat - now) / 1000) + 1000))) end
  local kr, kt = 0, 0
  if krpm > 0 then kr, kt = math.max(krpm - ksum, 0), untilOut(ksecs, 1) end
  if refused == 3 then kt = wait; kr = 0 end
  local mt = untilOut(msecs, 1)
  if refused == 2 then mt = wait end
  return {refused, refused == 1 and 0 or math.floor((cap - math.max(tat - now, 0)) / iv), math.max(tat - now, 0), wait, math.max(rpm - msum, 0), mt, kr, kt, inflight}
end

local function add(key, secs, sum)
  redis.call('HINCRBY', key, int(sec), 1)
  if #secs == 0 or secs[#secs][1] ~= sec then secs[#secs + 1] = {sec, 0} end
  secs[#secs][2] = secs[#secs][2] + 1
  return sum + 1
end
redis.call('HSET', KEYS[1], 'tat', int(nxt), 'rate', int(rps))
msum = add(KEYS[1], msecs, msum)
redis.call('PEXPIRE', KEYS[1], int(math.max(61000, math.ceil((nxt - now) / 1000) + 1000)))
local kr, kt = 0, 0
if krpm > 0 then
  ksum = add(KEYS[3], ksecs, ksum)
  redis.call('EXPIRE', KEYS[3], 61)
  kr, kt = krpm - ksum, untilOut(ksecs, 1)
end
redis.call('ZADD', KEYS[2], int(nowms + ttl), member)
redis.call('PEXPIRE', KEYS[2], int(ttl + 1000))
return {0, math.floor((cap - (nxt - now)) / iv), nxt - now, 0, rpm - msum, untilOut(msecs, 1), kr, kt, inflight + 1}
