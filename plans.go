package keyward

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/rate"
)

// Limits are what an organization may do: its request rates, how many of
// its requests may run at once, and its credits. A plan gives them; an
// organization may override each one. Every rate is across all of the
// organization's keys.
type Limits struct {
	// RequestsPerSecond is the token bucket's rate: the sustained rate.
	// Zero in a plan or override: the per-minute rate spread over the
	// minute, rounded up.
	RequestsPerSecond int64
	// Burst is the bucket's capacity: requests that may start at once. Zero
	// in a plan or override: the larger of RequestsPerSecond and Concurrency.
	Burst int64
	// RequestsPerMinute is the quota of any 60 seconds.
	RequestsPerMinute int64
	// Concurrency caps the requests in flight at once. Zero in a plan or
	// override: the per-second rate, at least 2.
	Concurrency int64
	// MonthlyCredits is the credit allocation per billing period.
	MonthlyCredits int64
}

// MaxRatePerMinute bounds every request rate, a plan's, an organization's
// and a key's, and every in-flight cap (credits: credit.MaxCredits).
const MaxRatePerMinute = rate.MaxPerMinute

// CheckLimits returns an error unless each limit is in range: rates in
// 0…MaxRatePerMinute a minute (a per-second rate in 0…MaxRatePerMinute/60),
// a burst and an in-flight cap in 0…MaxRatePerMinute, credits in 0…credit.MaxCredits
// (0: the plan's, or derived, or custom). It is the one rule for plans,
// organizations and keys.
func CheckLimits(l Limits) error {
	var errs []error
	for _, r := range []struct {
		what, unit string
		n, max     int64
	}{{"rate", "/min", l.RequestsPerMinute, MaxRatePerMinute}, {"rate", "/s", l.RequestsPerSecond, MaxRatePerMinute / 60},
		{"burst", "", l.Burst, MaxRatePerMinute}, {"in-flight cap", "", l.Concurrency, MaxRatePerMinute}} {
		if r.n < 0 || r.n > r.max {
			errs = append(errs, fmt.Errorf("%s %d%s is out of range: 0 to %d%s (keyward.MaxRatePerMinute)", r.what, r.n, r.unit, r.max, r.unit))
		}
	}
	if credit.CheckAmount(l.MonthlyCredits) != nil {
		errs = append(errs, fmt.Errorf("credits %d are out of range: 0 to %d (credit.MaxCredits)", l.MonthlyCredits, credit.MaxCredits))
	}
	return errors.Join(errs...)
}

// Plan is a row of the plan table. A zero rate is "custom": each of its
// organizations must set one; zero credits are none unless it sets some.
type Plan struct {
	// Name is the plan's name, as in Organization.Plan.
	Name string
	// Limits are the plan's limits.
	Limits Limits
}

// Plans is the plan table: immutable, safe for concurrent use, and shared
// by everything that needs a rate or an allocation. A nil *Plans is
// DefaultPlans() everywhere. Stores resolve each organization's Limits with
// it (Resolve), so the handlers read limits from the key record alone.
type Plans struct {
	byName map[string]Plan
	names  []string // sorted
}

// NewPlans returns the table of plans, or every problem of it joined: an
// empty or repeated name, a negative limit.
func NewPlans(plans ...Plan) (*Plans, error) {
	var errs []error
	t := &Plans{byName: make(map[string]Plan, len(plans))}
	for _, p := range plans {
		field := "Plans[" + strconv.Quote(p.Name) + "]"
		if p.Name == "" {
			errs = append(errs, &ConfigError{Field: "Plans", Problem: "has a plan without a name"})
		} else if _, dup := t.byName[p.Name]; dup {
			errs = append(errs, &ConfigError{Field: field, Problem: "is named twice"})
		}
		if err := CheckLimits(p.Limits); err != nil {
			errs = append(errs, &ConfigError{Field: field, Problem: "has a limit out of range: " + err.Error()})
		}
		t.byName[p.Name] = p
		t.names = append(t.names, p.Name)
	}
	if len(plans) == 0 {
		errs = append(errs, &ConfigError{Field: "Plans", Problem: "is empty; use DefaultPlans"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(t.names)
	return t, nil
}

// defaultPlans is DESIGN.md's table: Triqai's published plans.
var defaultPlans, _ = NewPlans(
	Plan{Name: "free", Limits: Limits{RequestsPerSecond: 1, RequestsPerMinute: 60, Concurrency: 2, MonthlyCredits: 100}},
	Plan{Name: "starter", Limits: Limits{RequestsPerSecond: 5, RequestsPerMinute: 300, Concurrency: 5, MonthlyCredits: 4_000}},
	Plan{Name: "growth", Limits: Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Concurrency: 10, MonthlyCredits: 25_000}},
	Plan{Name: "business", Limits: Limits{RequestsPerSecond: 20, RequestsPerMinute: 1_200, Concurrency: 20, MonthlyCredits: 100_000}},
	Plan{Name: "enterprise"},
)

// DefaultPlans returns Triqai's published plans: free, starter, growth,
// business and enterprise (custom). Triqai publishes the rates; the
// in-flight caps are keyward's (2 on free, as Triqai's own client assumes,
// then one second of the plan's rate); bursts are Limits' default (zero).
func DefaultPlans() *Plans { return defaultPlans }

func (t *Plans) table() *Plans {
	if t == nil {
		return defaultPlans
	}
	return t
}

// All returns the plans, by name.
func (t *Plans) All() []Plan {
	out := make([]Plan, 0, len(t.table().names))
	for _, n := range t.table().names {
		out = append(out, t.table().byName[n])
	}
	return out
}

// Plan returns the plan named name.
func (t *Plans) Plan(name string) (Plan, bool) {
	p, ok := t.table().byName[name]
	return p, ok
}

// Resolve returns org's limits: each of its overrides that is > 0,
// else its plan's, then the derived defaults of Limits for a per-second
// rate, in-flight cap or burst still zero: the one place that rule lives.
// An unknown plan, an override out of range, or a plan with a custom rate
// and no rate override is an error.
func (t *Plans) Resolve(org Organization) (Limits, error) {
	var errs []error
	p, ok := t.Plan(org.Plan)
	if !ok {
		errs = append(errs, errors.New("keyward: unknown plan "+strconv.Quote(org.Plan)+"; the plan table has "+
			quoteList(t.table().names)))
	}
	over := Limits{RequestsPerSecond: org.RatePerSecond, RequestsPerMinute: org.RatePerMinute,
		Burst: org.Burst, Concurrency: org.Concurrency, MonthlyCredits: org.MonthlyCredits}
	if err := CheckLimits(over); err != nil {
		errs = append(errs, errors.New("keyward: the organization's "+err.Error()))
	}
	l := p.Limits
	for _, f := range []struct{ to, from *int64 }{{&l.RequestsPerSecond, &over.RequestsPerSecond},
		{&l.RequestsPerMinute, &over.RequestsPerMinute}, {&l.Burst, &over.Burst}, {&l.Concurrency, &over.Concurrency},
		{&l.MonthlyCredits, &over.MonthlyCredits}} {
		if *f.from > 0 {
			*f.to = *f.from
		}
	}
	l.RequestsPerSecond = cmp.Or(l.RequestsPerSecond, min((l.RequestsPerMinute+59)/60, MaxRatePerMinute/60))
	l.Concurrency = cmp.Or(l.Concurrency, max(l.RequestsPerSecond, 2))
	l.Burst = cmp.Or(l.Burst, max(l.RequestsPerSecond, l.Concurrency))
	if ok && l.RequestsPerMinute == 0 {
		errs = append(errs, errors.New("keyward: plan "+strconv.Quote(org.Plan)+" has a custom rate; set the organization's RatePerMinute"))
	}
	if len(errs) > 0 {
		return Limits{}, errors.Join(errs...)
	}
	return l, nil
}

// limitsOf returns k's organization's limits as its KeyStore resolved
// them, or the 500 naming the misconfiguration: Resolve never leaves a
// rate or the in-flight cap at zero, so a zero means a store that did not
// resolve them.
func limitsOf(k *KeyRecord) (Limits, error) {
	l := k.Org.Limits
	if l.RequestsPerMinute <= 0 || l.RequestsPerSecond <= 0 || l.Concurrency <= 0 {
		return Limits{}, misconfigured("organization " + strconv.Quote(k.Org.ID) + " has no limits: its plan " +
			strconv.Quote(k.Org.Plan) + " is not in the key store's plan table, or gives no rate and the organization sets none")
	}
	return l, nil
}
