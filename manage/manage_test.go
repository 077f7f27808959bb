package manage_test

import (
	"strings"
	"testing"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
)

// Names and notes: any printable text up to the bound, in bytes; nothing a
// database may refuse or a dashboard may show as other text.
func TestCheckText(t *testing.T) {
	for s, ok := range map[string]bool{
		"Acme Inc.":                    true,
		"Café 東京 🚀":                    true,
		strings.Repeat("a", 200):       true,
		strings.Repeat("é", 100):       true, // 200 bytes
		strings.Repeat("a", 201):       false,
		strings.Repeat("é", 100) + "a": false,
		"a\x00b":                       false,
		"tab\there":                    false,
		"line\nbreak":                  false,
		"\x7f":                         false,
		"\u0085":                       false, // C1 control
		"evil\u202egpj.exe":            false,
		"\u2066isolate":                false,
		"\u200fmark":                   false,
		"bad \xff utf-8":               false,
	} {
		err := manage.CheckText("name", s, manage.MaxNameLen)
		assert.Equal(t, ok, err == nil, "%q: %v", s, err)
		if err != nil {
			assert.NotContains(t, err.Error(), s, "the error does not repeat the text")
		}
	}
}

// Every check of a new name applies it: a new organization's, a new
// name of one, a new key's and a key's new name. CheckOrg, run on every
// update, does not judge a stored name again.
func TestNamesAreChecked(t *testing.T) {
	bad := "a\x00b"
	_, err := manage.NewOrg("org_1", manage.OrgSpec{Name: bad}, nil)
	assert.ErrorContains(t, err, "organization name")
	assert.ErrorContains(t, manage.CheckOrgName(bad), "organization name")
	assert.NoError(t, manage.CheckOrg(keyward.Organization{Name: strings.Repeat("a", 300), Plan: "free"}, nil))
	spec := manage.KeySpec{Name: bad}
	assert.ErrorContains(t, spec.Check(), "key name")
	assert.ErrorContains(t, manage.KeyChange{Name: &bad}.Check(), "key name")
	assert.ErrorContains(t, manage.CheckOrg(keyward.Organization{}, nil), "organization name is empty")
	ok := "prod"
	assert.NoError(t, manage.KeyChange{Name: &ok}.Check())
}
