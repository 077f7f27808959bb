package admin_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/keyward/keyward/admin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A brand's accent is a colour "#rgb" or "#rrggbb" dark enough for white
// text, and nothing else reaches the page's stylesheet.
func TestBrandAccentIsAColour(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	for _, accent := range []string{";000", "}a0a", "red", "#fff", "#ffffff", "6b2fa0", "#6b2fa0;", "#6b2fa0 } x"} {
		_, err := admin.New(admin.Config{Keys: store, Ledger: store, Plans: store.Plans, Permissions: []string{"*"},
			OrgFor: func(*http.Request) (string, error) { return "", nil }, Brand: admin.Brand{Accent: accent}})
		assert.Error(t, err, "accent %q", accent)
	}
	e := &env{t: t, store: store}
	e.serve(admin.Config{OrgFor: func(*http.Request) (string, error) { return "", nil }, Brand: admin.Brand{Accent: "#6B2FA0"}})
	resp, err := http.Get(e.srv.URL + admin.PagePath + "static/brand.css")
	require.NoError(t, err)
	css, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, string(css), "--accent: #6B2FA0;")
}
