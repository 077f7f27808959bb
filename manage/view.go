package manage

import (
	"time"

	"github.com/keyward/keyward"
)

// OrgView is an organization as JSON: what the admin API answers and
// `keyward orgs … --json` prints. Each member has one meaning: the
// top-level rates, burst, concurrency and monthlyCredits are the
// organization's overrides of its plan (0: the plan's), as the admin API's
// requests set them; Limits are the effective limits, the plan's with
// those overrides applied (Organization.Limits).
type OrgView struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	Plan           string     `json:"plan"`
	RatePerMinute  int64      `json:"ratePerMinute"`
	RatePerSecond  int64      `json:"ratePerSecond"`
	Burst          int64      `json:"burst"`
	Concurrency    int64      `json:"concurrency"`
	MonthlyCredits int64      `json:"monthlyCredits"`
	AllowOverage   bool       `json:"allowOverage"`
	Limits         LimitsView `json:"limits"`
}

// LimitsView is an organization's effective limits as JSON (members in
// alphabetical order).
type LimitsView struct {
	Burst             int64 `json:"burst"`
	Concurrency       int64 `json:"concurrency"`
	MonthlyCredits    int64 `json:"monthlyCredits"`
	RequestsPerMinute int64 `json:"requestsPerMinute"`
	RequestsPerSecond int64 `json:"requestsPerSecond"`
}

// ViewOrg returns o's view.
func ViewOrg(o keyward.Organization) OrgView {
	l := o.Limits
	return OrgView{ID: o.ID, Name: o.Name, Plan: o.Plan, RatePerMinute: o.RatePerMinute, RatePerSecond: o.RatePerSecond,
		Burst: o.Burst, Concurrency: o.Concurrency, MonthlyCredits: o.MonthlyCredits, AllowOverage: o.AllowOverage,
		Limits: LimitsView{Burst: l.Burst, Concurrency: l.Concurrency, MonthlyCredits: l.MonthlyCredits,
			RequestsPerMinute: l.RequestsPerMinute, RequestsPerSecond: l.RequestsPerSecond}}
}

// KeyView is a key as JSON: what the admin API answers and `keyward keys …
// --json` prints. It never holds the key but in the answer that made it.
type KeyView struct {
	// Key is the plaintext: only in the answer that made the key.
	Key         string   `json:"key,omitempty"`
	ID          string   `json:"id"`
	OrgID       string   `json:"orgId"`
	Name        string   `json:"name"`
	Environment string   `json:"environment"`
	Hint        string   `json:"hint"`
	Permissions []string `json:"permissions"`
	// RatePerMinute is the key's own per-minute limit; 0: none.
	RatePerMinute int64      `json:"ratePerMinute"`
	Status        string     `json:"status"` // Status at the time given to ViewKey
	CreatedAt     time.Time  `json:"createdAt"`
	ExpiresAt     *time.Time `json:"expiresAt"`  // null: never
	RevokedAt     *time.Time `json:"revokedAt"`  // null: not revoked; later than now: its rotation's grace end
	LastUsedAt    *time.Time `json:"lastUsedAt"` // null: never used
	// Predecessor and Successor are the keys its rotation replaced and
	// was replaced by, when told (KeyInfo).
	Predecessor string `json:"predecessor,omitempty"`
	Successor   string `json:"successor,omitempty"`
}

// ViewKey returns r's view at now (times in UTC).
func ViewKey(r keyward.KeyRecord, now time.Time) KeyView {
	perms := r.Permissions
	if perms == nil {
		perms = []string{}
	}
	return KeyView{ID: r.ID, OrgID: r.Org.ID, Name: r.Name, Environment: string(r.Environment), Hint: r.Hint,
		Permissions: perms, RatePerMinute: r.RatePerMinute, Status: Status(&r, now), CreatedAt: r.CreatedAt.UTC(),
		ExpiresAt: utcOrNil(r.ExpiresAt), RevokedAt: utcOrNil(r.RevokedAt), LastUsedAt: utcOrNil(r.LastUsedAt)}
}

// ViewKeyInfo is ViewKey with the rotation chain of i.
func ViewKeyInfo(i KeyInfo, now time.Time) KeyView {
	v := ViewKey(i.Record, now)
	v.Predecessor, v.Successor = i.Predecessor, i.Successor
	return v
}

func utcOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
