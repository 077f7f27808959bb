package manage_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
)

// One member, one meaning: the top-level rates are the overrides (0: the
// plan's), limits the effective ones.
func TestViewOrgSeparatesOverridesFromEffectiveLimits(t *testing.T) {
	t.Parallel()
	o := keyward.Organization{ID: "org_1", Name: "Acme", Plan: "pro", RatePerSecond: 0, MonthlyCredits: 5,
		Limits: keyward.Limits{RequestsPerSecond: 10, Burst: 10, RequestsPerMinute: 600, Concurrency: 10, MonthlyCredits: 5}}
	b, err := json.Marshal(manage.ViewOrg(o))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"org_1","name":"Acme","plan":"pro","ratePerMinute":0,"ratePerSecond":0,"burst":0,"concurrency":0,"monthlyCredits":5,` +
		`"allowOverage":false,"limits":{"burst":10,"concurrency":10,"monthlyCredits":5,"requestsPerMinute":600,"requestsPerSecond":10}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func TestViewKeyInfo(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	rec := keyward.KeyRecord{ID: "key_2", Org: keyward.Organization{ID: "org_1"}, Name: "ci", Environment: keyward.EnvLive,
		Hint: "triq_AbCd…wXyZ", CreatedAt: now.In(time.FixedZone("X", 3600)), RevokedAt: now.Add(time.Hour)}
	b, err := json.Marshal(manage.ViewKeyInfo(manage.KeyInfo{Record: rec, Predecessor: "key_1"}, now))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"key_2","orgId":"org_1","name":"ci","environment":"live","hint":"triq_AbCd…wXyZ","permissions":[],"ratePerMinute":0,` +
		`"status":"` + manage.Status(&rec, now) + `","createdAt":"2026-11-29T10:00:00Z","expiresAt":null,"revokedAt":"2026-11-29T11:00:00Z","lastUsedAt":null,"predecessor":"key_1"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}
