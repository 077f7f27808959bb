package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/rate"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/admin"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/sqlstore"
)

// demoPermissions are the permissions of the demo API's routes, offered
// by the dashboard when it makes a key: the two its routes require, then
// the wildcards that grant them.
var demoPermissions = []string{"transactions:enrich", "transactions:read", "transactions:*", "*"}

// demoAPI is a miniature transaction-enrichment API: the routes of a real
// one, each behind the keyward handlers it needs.
type demoAPI struct {
	store  *sqlstore.Store
	ledger credit.Ledger
	errors *keyward.ErrorWriter
	limits *keyward.RateLimiter

	mu     sync.Mutex
	recent map[string][]enrichment // org id → newest last, at most recentMax
}

const recentMax = 50

type enrichment struct {
	ID          string    `json:"id"`
	Title       string    `json:"title"`
	Country     string    `json:"country"`
	Type        string    `json:"type"`
	Category    string    `json:"category"`
	Subcategory string    `json:"subcategory"`
	Merchant    *string   `json:"merchant"`
	Confidence  float64   `json:"confidence"`
	KeyID       string    `json:"keyId"`
	EnrichedAt  time.Time `json:"enrichedAt"`
}

func newDemoAPI(s *sqlstore.Store, ledger credit.Ledger, limitStore rate.Store, failedAuth *rate.FailedAuth, logger *slog.Logger, loadtest bool) (http.Handler, error) {
	api := &demoAPI{
		store:  s,
		ledger: ledger,
		errors: &keyward.ErrorWriter{Logger: logger},
		recent: map[string][]enrichment{},
	}
	cache, err := keyward.NewCache(s, keyward.CacheConfig{})
	if err != nil {
		return nil, err
	}
	s.Watch(cache)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: s.Format().Prefix(), Errors: api.errors, Usage: s,
		FailedAuth: failedAuth})
	if err != nil {
		return nil, err
	}
	api.limits, err = keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: limitStore, Errors: api.errors, Logger: logger})
	if err != nil {
		return nil, err
	}
	// auth counts each call's outcome by key and day for the dashboard
	// (Usage: s records calls).
	requireKey := auth.Middleware
	limit := api.limits.Middleware
	perm := func(p string) func(http.Handler) http.Handler {
		c, err2 := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{p}, Errors: api.errors})
		if err = errors.Join(err, err2); err2 != nil {
			return nil
		}
		return c.Middleware
	}
	charger, err2 := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger, Cost: 1, Errors: api.errors})
	enrich, read := perm("transactions:enrich"), perm("transactions:read")
	if err = errors.Join(err, err2); err != nil {
		return nil, err
	}
	charge := charger.Middleware
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.Handle("POST /v1/transactions/enrich", requireKey(enrich(limit(charge(http.HandlerFunc(api.enrich))))))
	mux.Handle("GET /v1/transactions", requireKey(read(limit(http.HandlerFunc(api.transactions)))))
	mux.Handle("GET /v1/categories", requireKey(limit(http.HandlerFunc(api.categories))))
	mux.Handle("GET /v1/usage", requireKey(limit(http.HandlerFunc(api.usage))))
	if loadtest {
		// One small handler twice: behind the full chain and bare, so that
		// a load test measures what keyward adds; and the store lookups
		// behind the cache, so that floods of bad keys can be checked.
		small := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = w.Write([]byte(`{"success":true}` + "\n"))
		})
		mux.Handle("POST /loadtest/protected", requireKey(enrich(limit(charge(small)))))
		mux.Handle("POST /loadtest/open", small)
		mux.HandleFunc("GET /loadtest/stats", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"storeLookups": cache.StoreCalls()})
		})
	}
	// Any other path or method gets the error envelope too, not net/http's
	// plain text: the admin API's answers.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		api.errors.WriteError(w, r, admin.NoRoute(mux, r))
	})
	return mux, nil
}

// writeJSON answers v as JSON, outside the envelope (the health check and
// the load test's counters).
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type enrichRequest struct {
	Title   string `json:"title"`
	Country string `json:"country"`
	Type    string `json:"type"`
}

func (api *demoAPI) enrich(w http.ResponseWriter, r *http.Request) {
	p, _ := keyward.FromContext(r.Context())
	var req enrichRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	fieldErrors := map[string]string{}
	if err != nil || json.Unmarshal(body, &req) != nil {
		api.errors.WriteError(w, r, keyward.Validation(http.StatusUnprocessableEntity,
			"The request body must be a JSON object: {\"title\": \"…\", \"country\": \"US\", \"type\": \"expense\"}.",
			map[string]any{"fieldErrors": map[string]string{"body": "must be a JSON object"}}))
		return
	}
	req.Title, req.Country, req.Type = trimmed(req.Title), strings.ToUpper(trimmed(req.Country)), strings.ToLower(trimmed(req.Type))
	if req.Title == "" || len(req.Title) > 500 {
		fieldErrors["title"] = "must be 1 to 500 characters"
	}
	if len(req.Country) != 2 || !isLetters(req.Country) {
		fieldErrors["country"] = "must be an ISO 3166-1 alpha-2 code such as US"
	}
	if req.Type != "expense" && req.Type != "income" {
		fieldErrors["type"] = "must be expense or income"
	}
	if len(fieldErrors) > 0 {
		api.errors.WriteError(w, r, keyward.Validation(http.StatusUnprocessableEntity,
			"The transaction is invalid: see details.fieldErrors. Invalid requests are not charged.",
			map[string]any{"fieldErrors": fieldErrors}))
		return
	}
	e := categorize(req)
	e.ID, e.KeyID, e.EnrichedAt = ids.New("txn_"), p.ID, time.Now().UTC()
	api.mu.Lock()
	list := append(api.recent[p.Org.ID], e)
	if len(list) > recentMax {
		list = list[len(list)-recentMax:]
	}
	api.recent[p.Org.ID] = list
	api.mu.Unlock()
	api.errors.WriteData(w, r, http.StatusOK, e)
}

func isLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// rules map words in a transaction title to a category: a small
// rule-based guess, enough for a demo, no network.
var rules = []struct {
	words                 []string
	category, subcategory string
	merchant              string
}{
	{[]string{"STARBUCKS"}, "food_and_drink", "coffee", "Starbucks"},
	{[]string{"COFFEE", "CAFE"}, "food_and_drink", "coffee", ""},
	{[]string{"MCDONALD", "BURGER", "PIZZA", "RESTAURANT"}, "food_and_drink", "restaurants", ""},
	{[]string{"UBER", "LYFT", "TAXI"}, "transportation", "rideshare", ""},
	{[]string{"SHELL", "CHEVRON", "EXXON", "FUEL", "GAS"}, "transportation", "fuel", ""},
	{[]string{"AMAZON", "AMZN"}, "shopping", "online_marketplaces", "Amazon"},
	{[]string{"NETFLIX", "SPOTIFY"}, "entertainment", "subscriptions", ""},
	{[]string{"WALMART", "KROGER", "GROCERY", "SAFEWAY"}, "groceries", "supermarkets", ""},
	{[]string{"SALARY", "PAYROLL"}, "income", "salary", ""},
	{[]string{"RENT", "LANDLORD"}, "housing", "rent", ""},
}

func categorize(req enrichRequest) enrichment {
	e := enrichment{Title: req.Title, Country: req.Country, Type: req.Type, Category: "uncategorized", Subcategory: "other", Confidence: 0.2}
	upper := strings.ToUpper(req.Title)
	for _, rule := range rules {
		for _, w := range rule.words {
			if strings.Contains(upper, w) {
				e.Category, e.Subcategory, e.Confidence = rule.category, rule.subcategory, 0.9
				if rule.merchant != "" {
					m := rule.merchant
					e.Merchant = &m
				}
				return e
			}
		}
	}
	if req.Type == "income" {
		e.Category, e.Subcategory = "income", "other"
	}
	return e
}

func (api *demoAPI) transactions(w http.ResponseWriter, r *http.Request) {
	p, _ := keyward.FromContext(r.Context())
	api.mu.Lock()
	list := append([]enrichment(nil), api.recent[p.Org.ID]...)
	api.mu.Unlock()
	// Newest first.
	for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
		list[i], list[j] = list[j], list[i]
	}
	api.errors.WriteData(w, r, http.StatusOK, list)
}

var categories = []map[string]any{
	{"id": "food_and_drink", "subcategories": []string{"coffee", "restaurants"}},
	{"id": "transportation", "subcategories": []string{"rideshare", "fuel"}},
	{"id": "shopping", "subcategories": []string{"online_marketplaces"}},
	{"id": "entertainment", "subcategories": []string{"subscriptions"}},
	{"id": "groceries", "subcategories": []string{"supermarkets"}},
	{"id": "housing", "subcategories": []string{"rent"}},
	{"id": "income", "subcategories": []string{"salary", "other"}},
	{"id": "uncategorized", "subcategories": []string{"other"}},
}

func (api *demoAPI) categories(w http.ResponseWriter, r *http.Request) {
	api.errors.WriteData(w, r, http.StatusOK, categories)
}

func (api *demoAPI) usage(w http.ResponseWriter, r *http.Request) {
	p, _ := keyward.FromContext(r.Context())
	ctx := r.Context()
	bal, err := api.ledger.Balance(ctx, p.Account()) // a test key: the test budget
	if err != nil {
		api.errors.WriteError(w, r, keyward.ServiceUnavailable("credit ledger", err))
		return
	}
	keys, nextAfter, err := admin.ListKeys(r, api.store, p.Org.ID) // ?limit= and ?after=, as the admin API's
	if err != nil {
		api.errors.WriteError(w, r, err)
		return
	}
	now := time.Now()
	keyList := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		v := manage.ViewKey(k, now)
		keyList = append(keyList, map[string]any{"id": v.ID, "name": v.Name, "hint": v.Hint, "environment": v.Environment,
			"status": v.Status, "lastUsedAt": v.LastUsedAt})
	}
	// The rate-limit headers were set by RateLimitByOrg for this very call.
	remaining, _ := strconv.ParseInt(w.Header().Get("X-RateLimit-Remaining"), 10, 64)
	inFlight, _ := strconv.ParseInt(w.Header().Get("X-RateLimit-Concurrency-Remaining"), 10, 64)
	l := p.Org.Limits
	api.errors.WriteData(w, r, http.StatusOK, map[string]any{
		"organization": map[string]any{"id": p.Org.ID, "name": p.Org.Name, "plan": p.Org.Plan, "allowOverage": p.Org.AllowOverage},
		"credits": map[string]any{"allocation": bal.Allocation, "granted": bal.Granted, "spent": bal.Spent,
			"reserved": bal.Reserved, "leased": bal.Leased, "remaining": bal.Available, "periodEnd": bal.PeriodEnd.UTC().Format(time.RFC3339)},
		"rateLimit": map[string]any{"perSecond": l.RequestsPerSecond, "burst": l.Burst, "perMinute": l.RequestsPerMinute,
			"concurrency": l.Concurrency, "remaining": remaining, "concurrencyRemaining": inFlight,
			"reset": w.Header().Get("X-RateLimit-Reset")},
		"keys":          keyList,
		"keysNextAfter": nilIfEmpty(nextAfter),
	})
}

// nilIfEmpty is s, or JSON's null for "".
func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// trimmed is strings.TrimSpace, for the demo's validation.
func trimmed(s string) string { return strings.TrimSpace(s) }
