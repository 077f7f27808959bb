package redislimit_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/redislimit"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// expiries reads Redis's clock and when each of keys expires, in one
// round trip: the zero time for a key without an expiry (or none).
func expiries(t *testing.T, client *redis.Client, keys ...string) (now time.Time, at []time.Time) {
	t.Helper()
	ctx := context.Background()
	var clock *redis.TimeCmd
	ttls := make([]*redis.DurationCmd, len(keys))
	_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
		clock = p.Time(ctx)
		for i, k := range keys {
			ttls[i] = p.PTTL(ctx, k)
		}
		return nil
	})
	require.NoError(t, err)
	now = clock.Val()
	for _, ttl := range ttls {
		if ttl.Val() > 0 {
			at = append(at, now.Add(ttl.Val()))
		} else {
			at = append(at, time.Time{})
		}
	}
	return now, at
}

// TestExpiriesCoverEveryRequest: the script moves the keys' expiries on
// only when a second begins (or the set's might be too short), yet after
// every request the organization's hash and the key's live a minute past
// it (its quota counts it that long) and no more than 61 s, and the
// in-flight set outlives every slot in it, by a second, whichever
// instance's SlotTTL is the longest: an instance with a shorter one never
// shortens it. The requests span a few seconds of Redis's clock.
func TestExpiriesCoverEveryRequest(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := newClient(t, opts)
	ctx := context.Background()
	prefix := testPrefix(t, opts)
	short, err := redislimit.New(ctx, client, redislimit.Options{Prefix: prefix, SlotTTL: time.Second})
	require.NoError(t, err)
	long, err := redislimit.New(ctx, client, redislimit.Options{Prefix: prefix, SlotTTL: 10 * time.Second})
	require.NoError(t, err)
	org := "org_" + ids.New("")
	hash := prefix + ":{" + org + "}"
	set, keyHash := hash+":inflight", hash+":key:key_a"
	req := rate.Request{Org: org, Key: "key_a", PerSecond: 100, PerMinute: 1000, Concurrency: 100, KeyPerMinute: 1000}

	var longSlot time.Time // when the last slot of the long SlotTTL was taken
	for i := range 16 {
		s, ttl := short, time.Second
		if i%4 == 1 {
			s, ttl = long, 10*time.Second
		}
		before, err := client.Time(ctx).Result()
		require.NoError(t, err)
		res, err := s.Take(ctx, req)
		require.NoError(t, err)
		require.Equal(t, rate.Scope(""), res.Refused)
		if s == long {
			longSlot = before // held to the end: renewed
			t.Cleanup(func() { long.Release(org, res.Slot) })
		}
		now, at := expiries(t, client, hash, keyHash, set)
		for j, name := range []string{"the organization's hash", "the key's hash"} {
			assert.False(t, at[j].Before(before.Add(time.Minute)), "request %d: %s lives a minute past it", i, name)
			assert.False(t, at[j].After(now.Add(61*time.Second)), "request %d: %s lives at most 61 s", i, name)
		}
		assert.False(t, at[2].Before(before.Add(ttl+time.Second)), "request %d: the set outlives its slot", i)
		if !longSlot.IsZero() {
			assert.False(t, at[2].Before(longSlot.Add(11*time.Second)), "request %d: the set outlives the long slot", i)
		}
		if s == short {
			s.Release(org, res.Slot) // (after the expiries are read: the set may empty, and be made anew)
		}
		time.Sleep(150 * time.Millisecond)
	}

	// Without "zx" (the hash expired meanwhile, or a script that does not
	// write it), the short Store reads the set's expiry, and keeps the
	// longer one.
	require.NoError(t, client.HDel(ctx, hash, "zx").Err())
	res, err := short.Take(ctx, req)
	require.NoError(t, err)
	_, at := expiries(t, client, hash, keyHash, set)
	assert.False(t, at[2].Before(longSlot.Add(11*time.Second)), "the set's expiry is never shortened")
	short.Release(org, res.Slot)
}

// TestRefusalMakesNoKeyHash: a request refused before its key's quota
// counts it does not make that key's hash, which would have no expiry.
func TestRefusalMakesNoKeyHash(t *testing.T) {
	t.Parallel()
	r := newStoreRig(t, redislimit.Options{})
	ctx, store, client, prefix, org := context.Background(), r.store, r.client, r.prefix, r.org
	req := rate.Request{Org: org, Key: "key_a", PerSecond: 1, PerMinute: 100, Concurrency: 10}
	res, err := store.Take(ctx, req)
	require.NoError(t, err)
	require.Equal(t, rate.Scope(""), res.Refused)
	store.Release(org, res.Slot)
	req.Key, req.KeyPerMinute = "key_b", 5
	res, err = store.Take(ctx, req)
	require.NoError(t, err)
	require.Equal(t, rate.PerSecond, res.Refused)
	ttl, err := client.PTTL(ctx, prefix+":{"+org+"}:key:key_b").Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-2), ttl, "no hash for key_b")
}

// TestPreviousScriptSharesItsState: while a deploy replaces instances,
// the previous release's script and this one decide one organization's
// requests, each on the state the other wrote: together they keep its
// in-flight cap, its key's quota and its own quota, and leave every key
// with an expiry.
func TestPreviousScriptSharesItsState(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("testdata/take_previous.lua")
	require.NoError(t, err)
	previous := redis.NewScript(string(src))
	r := newStoreRig(t, redislimit.Options{})
	ctx, store, client, prefix, org := context.Background(), r.store, r.client, r.prefix, r.org
	hash := prefix + ":{" + org + "}"
	set := hash + ":inflight"
	const rpm, keyRPM, conc = 10, 8, 3

	// take decides one request of key on the previous script (odd i) or
	// on the Store (even i), and returns the limit that refused it and a
	// function that gives its slot back.
	take := func(i int, key string, keyLimit int64) (rate.Scope, func()) {
		if i%2 == 0 {
			res, err := store.Take(ctx, rate.Request{Org: org, Key: key, PerSecond: 1000, PerMinute: rpm,
				Concurrency: conc, KeyPerMinute: keyLimit})
			require.NoError(t, err)
			return res.Refused, func() { store.Release(org, res.Slot) }
		}
		keys := []string{hash, set}
		if keyLimit > 0 {
			keys = append(keys, hash+":key:"+key)
		}
		member := "previous:" + strconv.Itoa(i)
		v, err := previous.Run(ctx, client, keys, 1000, rpm, conc, keyLimit, member, 15000).Int64Slice()
		require.NoError(t, err)
		require.Len(t, v, 9)
		scope := []rate.Scope{"", rate.PerSecond, rate.PerMinute, rate.KeyPerMinute, rate.InFlight}[v[0]]
		return scope, func() { require.NoError(t, client.ZRem(ctx, set, member).Err()) }
	}

	// The cap: three held, from both scripts; the fourth is refused by
	// either.
	var release []func()
	for i := range conc {
		scope, done := take(i, "key_a", keyRPM)
		require.Equal(t, rate.Scope(""), scope, "request %d", i)
		release = append(release, done)
	}
	for i := conc; i < conc+2; i++ {
		scope, _ := take(i, "key_a", keyRPM)
		assert.Equal(t, rate.InFlight, scope, "request %d", i)
	}
	for _, done := range release {
		done()
	}
	// The key's quota: 8 counted, 3 of them above.
	served := conc
	for i := range 8 {
		scope, done := take(i, "key_a", keyRPM)
		if scope == "" {
			served++
			done()
		} else {
			assert.Equal(t, rate.KeyPerMinute, scope, "request %d", i)
		}
	}
	assert.Equal(t, keyRPM, served, "the key's quota, across both scripts")
	// The organization's quota: 2 more, by another key.
	for i := range 4 {
		scope, done := take(i, "key_b", 0)
		if scope == "" {
			served++
			done()
		} else {
			assert.Equal(t, rate.PerMinute, scope, "request %d", i)
		}
	}
	assert.Equal(t, rpm, served, "the organization's quota, across both scripts")
	_, at := expiries(t, client, hash, hash+":key:key_a")
	for i, at := range at {
		assert.False(t, at.IsZero(), "key %d has an expiry", i)
	}
}
