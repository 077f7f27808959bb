// Package policy formats the rate-limit header values: those that change
// only with an organization's limits (the IETF RateLimit-Policy field, and
// the per-second and in-flight limits in decimal) once per set of limits,
// since every request of an organization sends the same values and
// formatting them each time would cost allocations per request; and those
// of one decision (the RateLimit field) in one allocation.
package policy

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/rate"
)

// Limits are the numbers the field names.
type Limits struct {
	PerSecond, PerMinute, KeyPerMinute, Concurrency int64
}

// maxCached bounds the cache: past it the cache starts over, so that a
// store with countless custom limits costs formatting, not memory.
const maxCached = 4096

// Strings are the header values of one set of limits.
type Strings struct {
	// Policy is the RateLimit-Policy field: the policies "rps" (a quota of
	// PerSecond a 1-second window), "rpm" (PerMinute a 60-second window),
	// "key" when KeyPerMinute > 0, and "concurrency" (Concurrency
	// concurrent requests).
	Policy string
	// PerSecond, PerMinute, KeyPerMinute and Concurrency are the limits
	// in decimal.
	PerSecond, PerMinute, KeyPerMinute, Concurrency string

	limits Limits
}

var cache = struct {
	sync.RWMutex
	m map[Limits]*Strings
}{m: make(map[Limits]*Strings)}

// Last remembers the limits asked for last, in front of Of: an API whose
// requests mostly carry the same limits finds their values with one atomic
// load and no lock. The zero value is ready; it is safe for concurrent
// use.
type Last struct{ p atomic.Pointer[Strings] }

// Of returns Of(l), from memory when l were the limits asked for last.
func (c *Last) Of(l Limits) *Strings {
	if s := c.p.Load(); s != nil && s.limits == l {
		return s
	}
	s := Of(l)
	c.p.Store(s)
	return s
}

// Of returns the header values of l, formatted once.
func Of(l Limits) *Strings {
	cache.RLock()
	v, ok := cache.m[l]
	cache.RUnlock()
	if ok {
		return v
	}
	s := `"rps";q=` + strconv.FormatInt(l.PerSecond, 10) + `;w=1, "rpm";q=` + strconv.FormatInt(l.PerMinute, 10) + ";w=60"
	if l.KeyPerMinute > 0 {
		s += `, "key";q=` + strconv.FormatInt(l.KeyPerMinute, 10) + ";w=60"
	}
	s += `, "concurrency";q=` + strconv.FormatInt(l.Concurrency, 10) + `;qu="concurrent-requests"`
	v = &Strings{limits: l, Policy: s, PerSecond: strconv.FormatInt(l.PerSecond, 10), PerMinute: strconv.FormatInt(l.PerMinute, 10),
		KeyPerMinute: strconv.FormatInt(l.KeyPerMinute, 10), Concurrency: strconv.FormatInt(l.Concurrency, 10)}
	cache.Lock()
	if len(cache.m) >= maxCached {
		clear(cache.m)
	}
	cache.m[l] = v
	cache.Unlock()
	return v
}

// Decimal returns n in decimal, from memory when n is one of the limits
// (as X-RateLimit-Limit is: rate.Request.Headline decides which).
func (s *Strings) Decimal(n int64) string {
	switch n {
	case s.limits.PerSecond:
		return s.PerSecond
	case s.limits.PerMinute:
		return s.PerMinute
	case s.limits.KeyPerMinute:
		return s.KeyPerMinute
	case s.limits.Concurrency:
		return s.Concurrency
	}
	return strconv.FormatInt(n, 10)
}

// Reset formats X-RateLimit-Reset: an ISO-8601 time (RFC 3339, UTC), or
// Unix seconds when Unix is set, rounded up to the second, formatted once a
// second rather than once a request. The zero value is ready; it is safe
// for concurrent use.
type Reset struct {
	Unix bool
	last atomic.Pointer[resetText]
}

type resetText struct {
	unix int64
	text string
}

// Text returns the header value for t.
func (r *Reset) Text(t time.Time) string {
	unix := t.Unix()
	if t.Nanosecond() > 0 {
		unix++
	}
	if c := r.last.Load(); c != nil && c.unix == unix {
		return c.text
	}
	c := &resetText{unix: unix, text: time.Unix(unix, 0).UTC().Format(time.RFC3339)}
	if r.Unix {
		c.text = strconv.FormatInt(unix, 10)
	}
	r.last.Store(c)
	return c.text
}

// Current is the IETF RateLimit field of one decision, and the values
// X-RateLimit-Remaining and X-RateLimit-Concurrency-Remaining repeat from
// it.
type Current struct {
	// Field lists, for "rps", "rpm", "key" (when the key has a quota of
	// its own) and "concurrency", the requests remaining (r) and, but for
	// "concurrency", the seconds until the limit is whole again (t,
	// rounded up).
	Field string
	// Remaining and InFlight are the r of "rps" and of "concurrency".
	Remaining, InFlight string

	remaining int64 // Remaining's value
}

// Decimal returns n in decimal, from the field when n is the r of "rps"
// (as X-RateLimit-Remaining of an allowed request is).
func (c Current) Decimal(n int64) string {
	if n == c.remaining {
		return c.Remaining
	}
	return strconv.FormatInt(n, 10)
}

// CurrentOf formats the RateLimit field of a decision: the windows of the
// bucket, the quota and (withKey) the key's quota, and the in-flight slots
// left.
func CurrentOf(sec, min, key rate.Window, withKey bool, inFlight int64) Current {
	var buf [160]byte
	b := append(buf[:0], `"rps";r=`...)
	from := len(b)
	b = strconv.AppendInt(b, sec.Remaining, 10)
	to := len(b)
	b = appendReset(b, sec.Reset)
	b = appendReset(strconv.AppendInt(append(b, `, "rpm";r=`...), min.Remaining, 10), min.Reset)
	if withKey {
		b = appendReset(strconv.AppendInt(append(b, `, "key";r=`...), key.Remaining, 10), key.Reset)
	}
	b = append(b, `, "concurrency";r=`...)
	cfrom := len(b)
	field := string(strconv.AppendInt(b, inFlight, 10))
	return Current{Field: field, Remaining: field[from:to], InFlight: field[cfrom:], remaining: sec.Remaining}
}

// appendReset appends a RateLimit item's ";t=" parameter: whole seconds,
// rounded up.
func appendReset(b []byte, reset time.Duration) []byte {
	return strconv.AppendInt(append(b, ";t="...), int64((reset+time.Second-1)/time.Second), 10)
}
