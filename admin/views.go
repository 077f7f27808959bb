package admin

import (
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/usage"
)

// This file has the shapes in which the API and the page show things: one
// function per thing, used by both.

// limitField is one of an organization's effective limits.
type limitField struct {
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
// page shows them. A new kind of limit is added here, in manage.LimitsView
// and in the OpenAPI document's Limits schema.
func limitFields(l keyward.Limits) []limitField {
	return []limitField{
		{Label: "Per second", Value: l.RequestsPerSecond, Unit: "requests/s",
			One: "request", Many: "requests", Per: " per second"},
		{Label: "Burst", Value: l.Burst, Unit: "requests at the same instant",
			One: "request", Many: "requests", Per: " in a burst"},
		{Label: "Per minute", Value: l.RequestsPerMinute, Unit: "requests/min",
			One: "request", Many: "requests", Per: " per minute"},
		{Label: "At once", Value: l.Concurrency, Unit: "requests in flight",
			One: "request", Many: "requests", Per: " in progress at once"},
		{Label: "Credits", Value: l.MonthlyCredits, Unit: "credits/month",
			One: "credit", Many: "credits", Per: " per month"},
	}
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
