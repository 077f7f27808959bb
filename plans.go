package keyward

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/keyward/keyward/credit"
)

// Limits are what an organization may do: its request rate and its
// credits. A plan gives them; an organization may override each one.
type Limits struct {
	// RequestsPerMinute is the organization-wide request rate, across all
	// of its keys.
	RequestsPerMinute int64
	// MonthlyCredits is the credit allocation per billing period.
	MonthlyCredits int64
}

// MaxRatePerMinute bounds every request rate: a plan's, an organization's
// and a key's. One billion a minute is over 16 million requests a second;
// the bound keeps the RateLimit-Policy quota within a structured-field
// integer (15 digits) and every rate exact in JSON (below 2^53). Credits
// are bounded by credit.MaxCredits.
const MaxRatePerMinute = 1_000_000_000

// CheckLimits returns an error unless each limit is in range: a rate in
// 0…MaxRatePerMinute, credits in 0…credit.MaxCredits (0: the plan's, or
// custom). It is the one rule for plans, organizations and keys.
func CheckLimits(l Limits) error {
	var errs []error
	if l.RequestsPerMinute < 0 || l.RequestsPerMinute > MaxRatePerMinute {
		errs = append(errs, fmt.Errorf("rate %d/min is out of range: 0 to %d/min (keyward.MaxRatePerMinute)", l.RequestsPerMinute, MaxRatePerMinute))
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
	Plan{Name: "free", Limits: Limits{RequestsPerMinute: 60, MonthlyCredits: 100}},
	Plan{Name: "starter", Limits: Limits{RequestsPerMinute: 300, MonthlyCredits: 4_000}},
	Plan{Name: "growth", Limits: Limits{RequestsPerMinute: 600, MonthlyCredits: 25_000}},
	Plan{Name: "business", Limits: Limits{RequestsPerMinute: 1_200, MonthlyCredits: 100_000}},
	Plan{Name: "enterprise"},
)

// DefaultPlans returns Triqai's published plans: free, starter, growth,
// business and enterprise (custom).
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
// else its plan's. It is the one place that rule lives. An unknown plan,
// an override out of range, or a plan with a custom rate and no rate
// override is an error.
func (t *Plans) Resolve(org Organization) (Limits, error) {
	var errs []error
	p, ok := t.Plan(org.Plan)
	if !ok {
		errs = append(errs, errors.New("keyward: unknown plan "+strconv.Quote(org.Plan)+"; the plan table has "+
			quoteList(t.table().names)))
	}
	if err := CheckLimits(Limits{RequestsPerMinute: org.RatePerMinute, MonthlyCredits: org.MonthlyCredits}); err != nil {
		errs = append(errs, errors.New("keyward: the organization's "+err.Error()))
	}
	l := p.Limits
	if org.RatePerMinute > 0 {
		l.RequestsPerMinute = org.RatePerMinute
	}
	if org.MonthlyCredits > 0 {
		l.MonthlyCredits = org.MonthlyCredits
	}
	if ok && l.RequestsPerMinute == 0 {
		errs = append(errs, errors.New("keyward: plan "+strconv.Quote(org.Plan)+" has a custom rate; set the organization's RatePerMinute"))
	}
	if len(errs) > 0 {
		return Limits{}, errors.Join(errs...)
	}
	return l, nil
}

// limitsOf returns k's organization's limits as its KeyStore resolved
// them, or the 500 naming the misconfiguration: Resolve never leaves the
// rate at zero, so a zero rate means a store that did not resolve them.
func limitsOf(k *KeyRecord) (Limits, error) {
	if k.Org.Limits.RequestsPerMinute <= 0 {
		return Limits{}, misconfigured("organization " + strconv.Quote(k.Org.ID) + " has no limits: its plan " +
			strconv.Quote(k.Org.Plan) + " is not in the key store's plan table, or gives no rate and the organization sets none")
	}
	return k.Org.Limits, nil
}
