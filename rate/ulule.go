package rate

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/ulule/limiter/v3"
)

// Ulule returns a Store that keeps the per-minute quotas (the
// organization's and a key's) in s, any github.com/ulule/limiter/v3
// store, and the per-second bucket and in-flight slots in this process, as
// Memory does. The quotas are then ulule's fixed windows, aligned to the
// minute: up to twice PerMinute may pass in two seconds across a minute's
// end, and every request counts in them, refused ones too. They are
// checked first, so a request over its quota is refused with PerMinute (or
// KeyPerMinute) whatever its bucket holds. Counter keys are
// "org:ID:WINDOW" and "key:ID:WINDOW" (s adds its own prefix); the window
// in the key ends a counter that lost its expiry in s.
func Ulule(s limiter.Store) Store {
	return &ulule{store: s}
}

type ulule struct {
	store limiter.Store
	mem   Memory
}

// Take implements Store.
func (u *ulule) Take(ctx context.Context, req Request) (Result, error) {
	var res Result
	if err := req.Check(); err != nil {
		return res, err
	}
	win := req.Now.Unix() / 60
	reset := time.Unix((win+1)*60, 0).Sub(req.Now)
	suffix := ":" + strconv.FormatInt(win, 10)
	var key, org Window
	refused := Scope("")
	if req.KeyPerMinute > 0 {
		var err error
		if key, err = u.count(ctx, "key:"+req.Key+suffix, req.KeyPerMinute, reset); err != nil {
			return Result{}, err
		}
		if key.Remaining < 0 {
			refused = KeyPerMinute
		}
	}
	var err error
	if org, err = u.count(ctx, "org:"+req.Org+suffix, req.PerMinute, reset); err != nil {
		return Result{}, err
	}
	if org.Remaining < 0 {
		refused = PerMinute
	}
	if refused != "" {
		res = Result{Refused: refused, Wait: reset}
	} else {
		inner := req
		inner.PerMinute, inner.KeyPerMinute = math.MaxInt64, 0
		res = u.mem.take(inner)
	}
	res.Minute, res.Key = Window{max(org.Remaining, 0), reset}, Window{max(key.Remaining, 0), reset}
	if req.KeyPerMinute == 0 {
		res.Key = Window{}
	}
	return res, nil
}

// count adds a request to ulule's counter name; Remaining < 0 is over.
func (u *ulule) count(ctx context.Context, name string, limit int64, reset time.Duration) (Window, error) {
	c, err := u.store.Get(ctx, name, limiter.Rate{Period: time.Minute, Limit: limit})
	if err != nil {
		return Window{}, err
	}
	if c.Reached {
		return Window{Remaining: -1, Reset: reset}, nil
	}
	return Window{Remaining: c.Remaining, Reset: reset}, nil
}

// Release implements Store.
func (u *ulule) Release(org string, slot uint64) { u.mem.Release(org, slot) }
