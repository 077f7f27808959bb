package admin

import (
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/usage"
)

// This file has the shapes in which the API and the page show things: one
// function per thing, used by both.

// limitField is one of an organization's effective limits.
type limitField struct {
	JSON  string // its member in the API's limits object
	Label string // its label on the page
	Value int64
	Unit  string // for operators: "requests/min", "credits/month"
	// One and Many are its noun, Per what follows the count, for
	// customers: "1 request per second" (limitText).
	One, Many, Per string
}

// Text is the limit as a customer reads it (limitText).
func (f limitField) Text() string { return limitText(f) }

// limitFields lists an organization's effective limits, in the order the
// page shows them. A new kind of limit is added here and in the OpenAPI
// document's Limits schema.
func limitFields(l keyward.Limits) []limitField {
	return []limitField{
		{JSON: "requestsPerSecond", Label: "Per second", Value: l.RequestsPerSecond, Unit: "requests/s",
			One: "request", Many: "requests", Per: " per second"},
		{JSON: "burst", Label: "Burst", Value: l.Burst, Unit: "requests at the same instant",
			One: "request", Many: "requests", Per: " in a burst"},
		{JSON: "requestsPerMinute", Label: "Per minute", Value: l.RequestsPerMinute, Unit: "requests/min",
			One: "request", Many: "requests", Per: " per minute"},
		{JSON: "concurrency", Label: "At once", Value: l.Concurrency, Unit: "requests in flight",
			One: "request", Many: "requests", Per: " in progress at once"},
		{JSON: "monthlyCredits", Label: "Credits", Value: l.MonthlyCredits, Unit: "credits/month",
			One: "credit", Many: "credits", Per: " per month"},
	}
}

type orgJSON struct {
	ID             string           `json:"id"`
	Name           string           `json:"name"`
	Plan           string           `json:"plan"`
	RatePerMinute  int64            `json:"ratePerMinute"`
	RatePerSecond  int64            `json:"ratePerSecond"`
	Burst          int64            `json:"burst"`
	Concurrency    int64            `json:"concurrency"`
	MonthlyCredits int64            `json:"monthlyCredits"`
	AllowOverage   bool             `json:"allowOverage"`
	Limits         map[string]int64 `json:"limits"`
}

func orgView(o keyward.Organization) orgJSON {
	limits := map[string]int64{}
	for _, f := range limitFields(o.Limits) {
		limits[f.JSON] = f.Value
	}
	return orgJSON{ID: o.ID, Name: o.Name, Plan: o.Plan, RatePerMinute: o.RatePerMinute, RatePerSecond: o.RatePerSecond,
		Burst: o.Burst, Concurrency: o.Concurrency, MonthlyCredits: o.MonthlyCredits, AllowOverage: o.AllowOverage, Limits: limits}
}

type keyJSON struct {
	// Key is the plaintext: only in the answer that made the key.
	Key           string     `json:"key,omitempty"`
	ID            string     `json:"id"`
	OrgID         string     `json:"orgId"`
	Name          string     `json:"name"`
	Environment   string     `json:"environment"`
	Hint          string     `json:"hint"`
	Permissions   []string   `json:"permissions"`
	RatePerMinute int64      `json:"ratePerMinute"`
	Status        string     `json:"status"`
	CreatedAt     time.Time  `json:"createdAt"`
	ExpiresAt     *time.Time `json:"expiresAt"`
	RevokedAt     *time.Time `json:"revokedAt"`
	LastUsedAt    *time.Time `json:"lastUsedAt"`
	Predecessor   string     `json:"predecessor,omitempty"`
	Successor     string     `json:"successor,omitempty"`
}

func keyView(r keyward.KeyRecord, now time.Time) keyJSON {
	perms := r.Permissions
	if perms == nil {
		perms = []string{}
	}
	return keyJSON{ID: r.ID, OrgID: r.Org.ID, Name: r.Name, Environment: string(r.Environment), Hint: r.Hint,
		Permissions: perms, RatePerMinute: r.RatePerMinute, Status: manage.Status(&r, now), CreatedAt: r.CreatedAt.UTC(),
		ExpiresAt: timePtr(r.ExpiresAt), RevokedAt: timePtr(r.RevokedAt), LastUsedAt: timePtr(r.LastUsedAt)}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

type balanceJSON struct {
	Allocation       int64     `json:"allocation"`
	Granted          int64     `json:"granted"`
	Spent            int64     `json:"spent"`
	Reserved         int64     `json:"reserved"`
	Available        int64     `json:"available"`
	OpenReservations int       `json:"openReservations"`
	PeriodStart      time.Time `json:"periodStart"`
	PeriodEnd        time.Time `json:"periodEnd"`
}

func balanceView(b credit.Balance) balanceJSON {
	return balanceJSON{Allocation: b.Allocation, Granted: b.Granted, Spent: b.Spent, Reserved: b.Reserved,
		Available: b.Available, OpenReservations: b.OpenReservations, PeriodStart: b.PeriodStart.UTC(), PeriodEnd: b.PeriodEnd.UTC()}
}

type entryJSON struct {
	ID          int64     `json:"id"`
	Kind        string    `json:"kind"`
	Amount      int64     `json:"amount"`
	KeyID       string    `json:"keyId"`
	RequestID   string    `json:"requestId"`
	Note        string    `json:"note"`
	PeriodStart time.Time `json:"periodStart"`
	CreatedAt   time.Time `json:"createdAt"`
}

func entryView(e credit.Entry) entryJSON {
	return entryJSON{ID: e.ID, Kind: e.Kind, Amount: e.Amount, KeyID: e.KeyID, RequestID: e.RequestID, Note: e.Note,
		PeriodStart: e.PeriodStart.UTC(), CreatedAt: e.CreatedAt.UTC()}
}

type dayJSON struct {
	Day      string           `json:"day"`
	Requests map[string]int64 `json:"requests"`
	Credits  int64            `json:"credits"`
}

func dayView(d usage.Day) dayJSON {
	req := make(map[string]int64, usage.NumOutcomes)
	for o := range usage.NumOutcomes {
		req[o.String()] = d.Requests[o]
	}
	return dayJSON{Day: d.Day.Format(time.DateOnly), Requests: req, Credits: d.Credits}
}
