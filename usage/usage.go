// Package usage counts what happened to the calls of each key, by UTC hour
// and day and by outcome (served, or refused with 403, 402 or 429), and the
// credits the ledger took for them: the figures a dashboard charts.
// Counting is in memory and costs no I/O; a store writes the counts in
// batches (sqlstore does, days and hours in one transaction at each usage
// flush), never once per request.
//
// keyward.RequireAPIKey records the calls it lets through when its
// AuthConfig.Usage is a keyward.CallRecorder (sqlstore.Store is; so is a
// Counter), whatever handlers follow it, as OutcomeOfCall counts them: a
// charged call by its Charge's settlement, so that the chart shows what
// the ledger charged.
package usage

import (
	"context"
	"net/http"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/detach"
	"github.com/keyward/keyward/internal/statuswriter"
)

// Outcome is what became of one call.
type Outcome uint8

// The outcomes, by final status.
const (
	Served      Outcome = iota // 2xx: the call was served (and charged, if it costs)
	Forbidden                  // 403: the key lacks a permission or its environment is refused
	NoCredits                  // 402: the organization's credits ran out
	RateLimited                // 429: over the rate limit
	Failed                     // any other status, or none: the request was invalid, the service failed, or the client left before an answer
	NumOutcomes                // the number of outcomes, for arrays indexed by Outcome
)

var names = [NumOutcomes]string{"served", "forbidden", "insufficient_credits", "rate_limited", "failed"}

// String returns the outcome's name as the admin API and the database
// spell it: served, forbidden, insufficient_credits, rate_limited, failed.
func (o Outcome) String() string {
	if o >= NumOutcomes {
		return "failed"
	}
	return names[o]
}

// ParseOutcome returns the outcome named s (see String).
func ParseOutcome(s string) (Outcome, bool) {
	for i, n := range names {
		if n == s {
			return Outcome(i), true
		}
	}
	return Failed, false
}

// OutcomeOf returns the outcome of a call answered with status (0: none
// was: Failed).
func OutcomeOf(status int) Outcome {
	switch {
	case status >= 200 && status < 300:
		return Served
	case status == http.StatusForbidden:
		return Forbidden
	case status == http.StatusPaymentRequired:
		return NoCredits
	case status == http.StatusTooManyRequests:
		return RateLimited
	}
	return Failed
}

// Recorder counts calls by outcome (Counter does, and sqlstore.Store). It
// runs on the request path: it must not block or do I/O (Counter does
// neither).
type Recorder interface {
	RecordOutcome(k *keyward.KeyRecord, o Outcome, credits int64, t time.Time)
}

// Day is one UTC day of usage: requests by outcome, and credits spent.
type Day struct {
	// Day is the day's first instant, UTC.
	Day time.Time
	// Requests counts the day's calls by outcome.
	Requests [NumOutcomes]int64
	// Credits is what the day's served calls spent.
	Credits int64
}

// Total returns the day's calls, whatever their outcome.
func (d Day) Total() int64 { return total(d.Requests) }

func total(requests [NumOutcomes]int64) int64 {
	var n int64
	for _, v := range requests {
		n += v
	}
	return n
}

// Reader reads recorded usage (flushed counts only).
type Reader interface {
	// UsageByDay returns the usage of an organization, or of one of its
	// keys when keyID is not empty, for each UTC day from the day of from
	// to the day of to, both included, oldest first (at most MaxDays, the
	// newest); a day without calls is there with zeros.
	UsageByDay(ctx context.Context, orgID, keyID string, from, to time.Time) ([]Day, error)
}

// Hour is one hour of usage: requests by outcome, and credits spent.
type Hour struct {
	// Hour is the hour's first instant, UTC.
	Hour time.Time
	// Requests counts the hour's calls by outcome.
	Requests [NumOutcomes]int64
	// Credits is what the hour's served calls spent.
	Credits int64
}

// Total returns the hour's calls, whatever their outcome.
func (h Hour) Total() int64 { return total(h.Requests) }

// HourReader reads recorded usage by hour (flushed counts only). A store
// keeps hours for at least KeepHours; older hours read as zeros.
type HourReader interface {
	// UsageByHour returns the usage of an organization, or of one of its
	// keys when keyID is not empty, for each hour from the hour of from to
	// the hour of to, both included, oldest first (at most KeepHours, the
	// newest); an hour without calls is there with zeros.
	UsageByHour(ctx context.Context, orgID, keyID string, from, to time.Time) ([]Hour, error)
}

// KeepHours is how long a store keeps usage by hour: two days, so that
// the last 24 hours can always be read whole.
const KeepHours = 48

// HourNumber is t's UTC hour as a number: hours since 1970-01-01.
func HourNumber(t time.Time) int64 {
	s := t.Unix()
	h := s / 3600
	if s%3600 < 0 {
		h--
	}
	return h
}

// HourStart is the first instant of hour n (an HourNumber), UTC.
func HourStart(n int64) time.Time { return time.Unix(n*3600, 0).UTC() }

// HourSeries returns one Hour for each hour from the hour of from to the
// hour of to, both included (at most KeepHours, the newest), filled from
// counts (hour number → Hour); a store's UsageByHour uses it.
func HourSeries(from, to time.Time, counts map[int64]*Hour) []Hour {
	return series(HourNumber(from), HourNumber(to), KeepHours, func(n int64) Hour {
		h := Hour{Hour: HourStart(n)}
		if c := counts[n]; c != nil {
			h.Requests, h.Credits = c.Requests, c.Credits
		}
		return h
	})
}

// DayNumber is t's UTC day as a number: days since 1970-01-01.
func DayNumber(t time.Time) int64 {
	s := t.Unix()
	d := s / 86400
	if s%86400 < 0 {
		d--
	}
	return d
}

// DayStart is the first instant of day n (a DayNumber), UTC.
func DayStart(n int64) time.Time { return time.Unix(n*86400, 0).UTC() }

// MaxDays bounds a series: ten years of days.
const MaxDays = 3660

// Series returns one Day for each day from the day of from to the day of
// to, both included, filled from counts (day number → Day); a store's
// UsageByDay uses it to include the days without calls. A longer range
// than MaxDays days gives its newest MaxDays.
func Series(from, to time.Time, counts map[int64]*Day) []Day {
	return series(DayNumber(from), DayNumber(to), MaxDays, func(n int64) Day {
		d := Day{Day: DayStart(n)}
		if c := counts[n]; c != nil {
			d.Requests, d.Credits = c.Requests, c.Credits
		}
		return d
	})
}

// series is the one rule of a series: one bucket for each number from
// first to last, both included, at most the newest most of them, none
// when last is before first; at makes bucket n.
func series[T any](first, last, most int64, at func(n int64) T) []T {
	if last < first {
		return []T{}
	}
	first = max(first, last-most+1)
	out := make([]T, 0, last-first+1)
	for n := first; n <= last; n++ {
		out = append(out, at(n))
	}
	return out
}

// OutcomeOfCall returns how a call counts, by one rule: its outcome and
// the credits the ledger took for it. ctx is the call's, sent the first
// final status its handlers sent (0: none).
//
//   - A call a keyward.ChargeCredits charged counts as its Charge settled
//     (keyward.Settlement): by the status it settled on (none, for a call
//     released because its client left, or that panicked or hijacked the
//     connection: Failed), with the credits the ledger committed.
//   - Any other call spent nothing and counts by the status sent; nothing
//     sent is net/http's 200, or no answer (Failed) if the client left
//     first.
func OutcomeOfCall(ctx context.Context, sent int) (Outcome, int64) {
	if ch, ok := keyward.ChargeFromContext(ctx); ok {
		if s, ok := ch.Settled(); ok {
			return OutcomeOf(s.Status), s.Credits
		}
	}
	if sent == 0 && !detach.ClientGone(ctx) {
		sent = http.StatusOK
	}
	return OutcomeOf(sent), 0
}

// Middleware records each call of the handler it wraps for its key
// (keyward.FromContext), as OutcomeOfCall counts it. A request without a
// key (no RequireAPIKey in front) is passed on and not recorded, and so is
// one whose RequireAPIKey records it (keyward.RecordsCalls): none counts
// twice. now nil: time.Now.
//
// Deprecated: give keyward.AuthConfig.Usage a keyward.CallRecorder
// (sqlstore.Store is one): RequireAPIKey then records every call it lets
// through, by the same rule, with no middleware of its own.
func Middleware(rec Recorder, now func() time.Time) func(http.Handler) http.Handler {
	if now == nil {
		now = time.Now
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			k, ok := keyward.FromContext(r.Context())
			if !ok || rec == nil || keyward.RecordsCalls(r.Context()) {
				next.ServeHTTP(w, r)
				return
			}
			sw := &statuswriter.Watch{} // one allocation for the writer and its observer
			next.ServeHTTP(sw.Watch(w), r)
			o, credits := OutcomeOfCall(r.Context(), sw.Status)
			rec.RecordOutcome(k, o, credits, now())
		})
	}
}
