// Package redislimit keeps keyward's rate limits in Redis, so that every
// instance of an API shares each organization's limits: give New's Store
// to keyward.RateLimitConfig.Store.
//
// One request costs one round trip: a Lua script decides all of the
// organization's limits at once, on Redis's clock (instances' clocks may
// disagree; Redis's is the one they share), as rate.Memory decides them in
// one process: the per-second bucket (GCRA), the per-minute quota over any
// 60 seconds (one-second buckets in a hash), the key's own quota, and the
// in-flight cap. In-flight slots are leases in a sorted set: each expires
// Options.SlotTTL after it was taken or last renewed, and the Store renews
// the slots it holds every third of that while their requests run. So a
// process that dies with requests in flight frees their slots within
// SlotTTL, and a slow request keeps its slot as long as its process lives.
// Keys are PREFIX:{ORG} (a hash: the bucket and the quota's seconds),
// PREFIX:{ORG}:inflight and PREFIX:{ORG}:key:ID; the braces keep an
// organization's keys in one Redis Cluster slot. Each expires when it no
// longer matters.
//
// Each call is given Options.Timeout; past it the call fails and the
// request is served unlimited, or refused with a 503, as
// keyward.RateLimitConfig.FailClosed says. The deadline reaches the network
// only on a client that lets it (redis.Options.ContextTimeoutEnabled): make
// the client from ClientOptions, and a frozen or unreachable Redis costs a
// request at most Options.Timeout. A client of go-redis's defaults waits up
// to 3 s for each answer and tries four times.
//
// To keep ulule/limiter's Redis store for the per-minute quota instead
// (its fixed windows), give keyward rate.Ulule of it.
package redislimit

import (
	"context"
	_ "embed"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/internal/nilness"
	"github.com/keyward/keyward/rate"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix prefixes every counter key when Options.Prefix is empty.
const DefaultPrefix = "keyward"

// DefaultTimeout is the Timeout of zero Options and of ClientOptions with
// a zero timeout: a call on a healthy network takes well under a
// millisecond, and a quarter of a second is what a frozen Redis may add
// to a request before it is served without a limit.
const DefaultTimeout = 250 * time.Millisecond

// Options configure New.
type Options struct {
	// Prefix prefixes every counter key. Zero: DefaultPrefix.
	// Give each API (or each test) sharing one Redis its own.
	Prefix string
	// Timeout bounds each call, and New's own checks (see the package
	// documentation for what it takes of the client). Zero:
	// DefaultTimeout.
	Timeout time.Duration
	// SlotTTL is how long an in-flight slot outlives the last sign of its
	// process: the bound on the slots of a process that died. Zero:
	// DefaultSlotTTL; at least 100 ms.
	SlotTTL time.Duration
}

// ClientOptions parses a Redis URL (redis://… or rediss://…, as
// redis.ParseURL) into client options with every wait bounded by timeout
// (zero: DefaultTimeout): dialing, reading, writing and waiting for a
// pooled connection, each at most timeout, and the caller's context
// deadline obeyed on the network (ContextTimeoutEnabled). A failed command
// is not retried: a retry would spend the same request's time budget on a
// server that just failed, and the check fails open (or closed) anyway.
func ClientOptions(url string, timeout time.Duration) (*redis.Options, error) {
	if timeout < 0 {
		return nil, &keyward.ConfigError{Field: "redislimit timeout", Problem: "is negative"}
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout, timeout
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1
	return opts, nil
}

// DefaultSlotTTL is the SlotTTL of zero Options: how long the slots of a
// process that died stay taken.
const DefaultSlotTTL = 15 * time.Second

// Store is the Redis rate.Store. Make one with New (the zero value is not
// usable). It is safe for concurrent use.
type Store struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	slotTTL time.Duration
	owner   string // this Store's part of every slot it takes
	last    atomic.Uint64
	// The script's arguments that never change, boxed once.
	ownerArg, ttlArg any

	mu       sync.Mutex
	held     map[slot]uint64 // slots to renew -> their names
	renewing bool
	released map[string][]uint64 // org -> names of slots given back, not yet removed from Redis
	// orphans are the names a failed Take used or carried: that round trip
	// may yet run in Redis, so they are removed, never reused.
	orphans  map[string][]uint64
	removing bool
}

type slot struct {
	org string
	n   uint64
}

//go:embed take.lua
var takeLua string

var takeScript = redis.NewScript(takeLua)

// The script's name and source as EVALSHA and EVAL take them, boxed once.
var takeSHA, takeSource any = takeScript.Hash(), takeLua

// renewLua moves a held slot's expiry SlotTTL past Redis's now; a slot
// released (or expired) meanwhile stays gone.
const renewLua = `local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZADD', KEYS[1], 'XX', 'CH', string.format('%d', ms + tonumber(ARGV[2])), ARGV[1]) == 1 and
    redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) + 1000 then
  redis.call('PEXPIRE', KEYS[1], string.format('%d', tonumber(ARGV[2]) + 1000))
end
return 0`

// New returns a Store on client. It loads its script, so Redis must answer
// now (within opts.Timeout); later outages are answered per request as
// keyward.RateLimitConfig.FailClosed says.
func New(ctx context.Context, client redis.UniversalClient, opts Options) (*Store, error) {
	if nilness.Is(client) {
		return nil, &keyward.ConfigError{Field: "redislimit client", Problem: "is nil"}
	}
	if opts.Timeout < 0 {
		return nil, &keyward.ConfigError{Field: "redislimit.Options.Timeout", Problem: "is negative"}
	}
	if opts.SlotTTL < 0 || opts.SlotTTL > 0 && opts.SlotTTL < 100*time.Millisecond {
		return nil, &keyward.ConfigError{Field: "redislimit.Options.SlotTTL", Problem: "is below 100ms"}
	}
	s := &Store{client: client, prefix: opts.Prefix, timeout: opts.Timeout, slotTTL: opts.SlotTTL,
		owner: ids.New(""), held: make(map[slot]uint64),
		released: make(map[string][]uint64), orphans: make(map[string][]uint64)}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.slotTTL == 0 {
		s.slotTTL = DefaultSlotTTL
	}
	s.ownerArg, s.ttlArg = s.owner, s.slotTTL.Milliseconds()
	loadCtx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := takeScript.Load(loadCtx, client).Err(); err != nil {
		return nil, errors.Join(errors.New("keyward: redislimit: Redis does not answer"), err)
	}
	return s, nil
}

// The script's answer for the limit that refused.
var scopes = [...]rate.Scope{"", rate.PerSecond, rate.PerMinute, rate.KeyPerMinute, rate.InFlight}

// Take implements rate.Store: one round trip.
func (s *Store) Take(ctx context.Context, req rate.Request) (rate.Result, error) {
	if err := req.Check(); err != nil {
		return rate.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n := s.last.Add(1)
	s.mu.Lock()
	given, orphans := s.released[req.Org], s.orphans[req.Org] // removed by this round trip, before the count
	delete(s.released, req.Org)
	delete(s.orphans, req.Org)
	s.mu.Unlock()
	// A slot is named OWNER:NAME in Redis. A new one takes the name of the
	// first slot given back, if any: the script then moves that lease on
	// for it rather than remove one and add the other.
	name := n
	if len(given) > 0 {
		name = given[0]
	}
	inflight := s.prefix + ":{" + req.Org + "}:inflight"
	hash := inflight[:len(inflight)-len(":inflight")]
	// EVALSHA sha numkeys KEYS... ARGV..., as take.lua reads them.
	args := make([]any, 0, 14+len(given)+len(orphans))
	args = append(args, "evalsha", takeSHA, 2, hash, inflight)
	if req.KeyPerMinute > 0 {
		args[2] = 3
		args = append(args, hash+":key:"+req.Key)
	}
	args = append(args, req.PerSecond, req.PerMinute, req.Concurrency, req.KeyPerMinute, s.ownerArg, name, s.ttlArg, req.Capacity())
	for _, g := range given {
		args = append(args, g)
	}
	for _, g := range orphans {
		args = append(args, g)
	}
	ctx, call := hooks.Start(ctx, "keyward.redis.take", req.Org, req.Key)
	v, err := s.run(ctx, args)
	if err != nil {
		call.End("error", err)
		// The round trip may yet have run in Redis: its lease, under its
		// name, and the names it carried are removed, never reused.
		lost := append(append([]uint64(nil), given...), orphans...)
		if len(given) == 0 {
			lost = append(lost, name)
		}
		s.mu.Lock()
		s.orphans[req.Org] = append(s.orphans[req.Org], lost...)
		start := !s.removing
		s.removing = true
		s.mu.Unlock()
		if start {
			go s.remove()
		}
		return rate.Result{}, err
	}
	call.End("ok", nil)
	if len(v) != 9 || v[0] < 0 || v[0] >= int64(len(scopes)) {
		return rate.Result{}, errors.New("keyward: redislimit: unexpected answer from the script")
	}
	us := func(i int) time.Duration { return time.Duration(v[i]) * time.Microsecond }
	res := rate.Result{Refused: scopes[v[0]], Wait: us(3),
		Second:   rate.Window{Remaining: v[1], Reset: us(2)},
		Minute:   rate.Window{Remaining: v[4], Reset: us(5)},
		Key:      rate.Window{Remaining: v[6], Reset: us(7)},
		InFlight: v[8]}
	if res.Refused == "" {
		res.Slot = n
		s.hold(slot{req.Org, n}, name)
	}
	return res, nil
}

// run sends take.lua's EVALSHA (args) and reads its answer as integers,
// loading the script with EVAL if Redis does not know it (restarted or
// flushed), as redis.Script.Run does.
func (s *Store) run(ctx context.Context, args []any) ([]int64, error) {
	cmd := redis.NewIntSliceCmd(ctx, args...)
	if err := s.client.Process(ctx, cmd); err == nil || !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return cmd.Result()
	}
	args[0], args[1] = "eval", takeSource
	cmd = redis.NewIntSliceCmd(ctx, args...)
	_ = s.client.Process(ctx, cmd)
	return cmd.Result()
}

// member is the Redis member of this Store's slot of that name.
func (s *Store) member(name uint64) string {
	return s.owner + ":" + strconv.FormatUint(name, 10)
}

// Release implements rate.Store without a round trip of the request's
// own: the slot stops being renewed at once, and is removed from Redis by
// this Store's next Take for the organization or, within a few
// milliseconds, by a goroutine that removes every slot given back in one
// pipeline, whichever comes first (so this instance's next request never
// counts it). A slot whose removal
// fails expires within SlotTTL.
func (s *Store) Release(org string, n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := s.held[slot{org, n}]
	if !ok {
		return
	}
	delete(s.held, slot{org, n})
	s.released[org] = append(s.released[org], name)
	if !s.removing {
		s.removing = true
		go s.remove()
	}
}

// removeDelay is how long a slot given back may wait for its
// organization's next Take to remove it: a busy organization's slots then
// cost no round trip of their own. Other instances see it free this much
// later at most (plus a round trip).
const removeDelay = 5 * time.Millisecond

// remove takes the slots given back out of Redis, in batches, until none
// is left to remove.
func (s *Store) remove() {
	for {
		time.Sleep(removeDelay)
		s.mu.Lock()
		batch := s.released
		for org, names := range s.orphans {
			batch[org] = append(batch[org], names...)
		}
		if len(batch) == 0 {
			s.removing = false
			s.mu.Unlock()
			return
		}
		s.released, s.orphans = make(map[string][]uint64), make(map[string][]uint64)
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		n := 0
		for _, names := range batch {
			n += len(names)
		}
		start := time.Now()
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for org, names := range batch {
				members := make([]any, len(names))
				for i, name := range names {
					members[i] = s.member(name)
				}
				p.ZRem(ctx, s.prefix+":{"+org+"}:inflight", members...)
			}
			return nil
		})
		endBackground("keyward.redis.release", n, start, err)
		cancel()
	}
}

// endBackground reports a background pipeline's failure (a slot whose
// renewal or removal failed expires within SlotTTL).
func endBackground(name string, n int, start time.Time, err error) {
	if err != nil {
		hooks.BackgroundFailed(context.Background(), name, n, start, err)
	}
}

// hold keeps a slot renewed until it is released, renewing from one
// goroutine while any is held.
func (s *Store) hold(sl slot, name uint64) {
	s.mu.Lock()
	s.held[sl] = name
	start := !s.renewing
	s.renewing = true
	s.mu.Unlock()
	if start {
		go s.renew()
	}
}

// renew moves the expiry of every held slot SlotTTL ahead, every third of
// SlotTTL, until none is held.
func (s *Store) renew() {
	for {
		time.Sleep(s.slotTTL / 3)
		s.mu.Lock()
		if len(s.held) == 0 {
			s.renewing = false
			s.mu.Unlock()
			return
		}
		type lease struct {
			org  string
			name uint64
		}
		held := make([]lease, 0, len(s.held))
		for sl, name := range s.held {
			held = append(held, lease{sl.org, name})
		}
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		start := time.Now()
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, l := range held {
				p.Eval(ctx, renewLua, []string{s.prefix + ":{" + l.org + "}:inflight"}, s.member(l.name), s.slotTTL.Milliseconds())
			}
			return nil
		})
		endBackground("keyward.redis.renew", len(held), start, err)
		cancel()
	}
}
