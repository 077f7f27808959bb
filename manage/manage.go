// Package manage is key management: the KeyManager contract that
// memstore and sqlstore keep, and the specs of new organizations and keys.
// Nothing in it runs on the request path.
package manage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyward/keyward"
)

// ErrOrgNotFound is what a KeyManager returns for an organization id it
// does not know.
var ErrOrgNotFound = errors.New("keyward: organization not found")

// ErrKeyRevoked is what a KeyManager returns when asked to rotate a key
// that is already revoked.
var ErrKeyRevoked = errors.New("keyward: key is revoked")

// ErrKeyRotated is what a KeyManager returns when asked to rotate a key
// that has a successor already: a key has at most one, so that a retried
// or doubled rotation never leaves two new keys working.
var ErrKeyRotated = errors.New("keyward: key is rotated already")

// ErrKeyExpired is what UpdateKey and RotateKey return for a key that has
// expired: an expired key is not brought back; make a new one.
var ErrKeyExpired = errors.New("keyward: key has expired")

// ErrTooManyKeys is what CreateKey returns, and RotateKey with a grace
// period, when the organization has as many working keys (neither revoked
// nor expired; a key in its rotation grace works) as its store allows
// (DefaultMaxKeys unless the store is told otherwise). The error wraps it
// with the number.
var ErrTooManyKeys = errors.New("keyward: the organization has the most working keys it may have")

// DefaultMaxKeys is how many working keys an organization may have when a
// store is given no other cap: enough for every environment, service and
// person of a large customer, few enough that a listing of them stays
// small.
const DefaultMaxKeys = 100

// TooManyKeys is ErrTooManyKeys naming the cap, max.
func TooManyKeys(max int) error {
	return fmt.Errorf("%w: %d; revoke one first", ErrTooManyKeys, max)
}

// ErrOrgHasLiveKeys is what a KeyManager returns when asked to delete,
// without force, an organization some of whose keys still work.
var ErrOrgHasLiveKeys = errors.New("keyward: organization has keys that still work")

// OrgSpec describes an organization to create.
type OrgSpec struct {
	// Name is for people. Required.
	Name string
	// Plan names a plan of the plan table. Zero: "free".
	Plan string
	// RatePerMinute, RatePerSecond, Burst and Concurrency override the
	// plan's limits each when > 0 (keyward.Limits; in range of
	// keyward.CheckLimits).
	RatePerMinute, RatePerSecond, Burst, Concurrency int64
	// MonthlyCredits overrides the plan's credit allocation when > 0.
	MonthlyCredits int64
	// AllowOverage lets calls go on when credits run out.
	AllowOverage bool
}

// MaxNameLen bounds an organization's and a key's name, and MaxNoteLen a
// credit grant's note, in bytes.
const (
	MaxNameLen = 200
	MaxNoteLen = 500
)

// CheckText returns an error naming field unless s is valid UTF-8 of at
// most max bytes without control characters or bidirectional formatting
// characters (which make a dashboard show text other than what is
// stored): the rule for names, and for notes of credit grants.
func CheckText(field, s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("keyward: %s is longer than %d bytes", field, max)
	case !utf8.ValidString(s):
		return fmt.Errorf("keyward: %s is not valid UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("keyward: %s has a control or bidirectional formatting character (%U)", field, r)
		}
	}
	return nil
}

// checkName is the rule for the name of what (an organization, a key).
func checkName(what, name string) error {
	if name == "" {
		return fmt.Errorf("keyward: %s name is empty", what)
	}
	return CheckText(what+" name", name, MaxNameLen)
}

// CheckOrgName returns an error unless name may be given to an
// organization: not empty, and by CheckText at most MaxNameLen bytes.
// NewOrg checks it; a caller renaming an organization checks the new name.
// CheckOrg does not, so that an organization stored before this rule can
// still be updated without a rename.
func CheckOrgName(name string) error { return checkName("organization", name) }

// CheckOrg returns every problem of o against the plan table
// (nil: DefaultPlans), joined: an empty name (see CheckOrgName for a new
// one), and what keyward.Plans.Resolve
// refuses. KeyManager implementations call it before storing an
// organization.
func CheckOrg(o keyward.Organization, plans *keyward.Plans) error {
	var errs []error
	if o.Name == "" {
		errs = append(errs, errors.New("keyward: organization name is empty"))
	}
	if _, err := plans.Resolve(o); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// NewOrg returns the organization n describes, with id, the
// default plan ("free") and its Limits filled in, or the problems of it
// (CheckOrg, then CheckOrgName).
func NewOrg(id string, n OrgSpec, plans *keyward.Plans) (keyward.Organization, error) {
	if n.Plan == "" {
		n.Plan = "free"
	}
	o := keyward.Organization{ID: id, Name: n.Name, Plan: n.Plan, RatePerMinute: n.RatePerMinute,
		RatePerSecond: n.RatePerSecond, Concurrency: n.Concurrency, Burst: n.Burst, MonthlyCredits: n.MonthlyCredits, AllowOverage: n.AllowOverage}
	if err := CheckOrg(o, plans); err != nil {
		return keyward.Organization{}, err
	}
	if err := CheckOrgName(o.Name); err != nil {
		return keyward.Organization{}, err
	}
	o.Limits, _ = plans.Resolve(o)
	return o, nil
}

// Bounds of the durations and rates a KeyManager accepts. Beyond them a
// value is a typo or an attack, and some would wrap around: a time past
// the year 2262 has no int64 nanosecond count, so a store keeping one
// would write a date in the past.
const (
	// MaxKeyLifetime is the longest KeySpec.ExpiresIn: 100 years, longer
	// than any credential should live, and far from the year 2262.
	MaxKeyLifetime = 100 * 365 * 24 * time.Hour
	// MaxRotationGrace is the longest grace RotateKey gives the old key:
	// one year. Grace is the time clients need to switch to the new key
	// (a release cycle, an annual on-premises upgrade); an old key that
	// keeps working longer is a second key in all but name.
	MaxRotationGrace = 365 * 24 * time.Hour
)

// CheckKeyLifetime returns an error unless d, a key's lifetime
// (KeySpec.ExpiresIn; zero for none), is between 0 and MaxKeyLifetime.
func CheckKeyLifetime(d time.Duration) error {
	if d < 0 || d > MaxKeyLifetime {
		return fmt.Errorf("keyward: key lifetime %v is out of range: 0 (none) to %v (manage.MaxKeyLifetime)", d, MaxKeyLifetime)
	}
	return nil
}

// SuccessorExpiry is when the key that RotateKey makes from old at now
// expires: as long after now as old's lifetime (which UpdateKey may have
// stretched), at most MaxKeyLifetime; zero when old never expires.
func SuccessorExpiry(old *keyward.KeyRecord, now time.Time) time.Time {
	if old.ExpiresAt.IsZero() {
		return time.Time{}
	}
	return now.Add(min(old.ExpiresAt.Sub(old.CreatedAt), MaxKeyLifetime))
}

// CheckRotationGrace returns an error if grace, how long RotateKey lets
// the old key work, is above MaxRotationGrace. A grace ≤ 0 (revoke at
// once) is accepted. Both KeyManager implementations call it before
// rotating.
func CheckRotationGrace(grace time.Duration) error {
	if grace > MaxRotationGrace {
		return fmt.Errorf("keyward: rotation grace %v is above the maximum, %v (manage.MaxRotationGrace)", grace, MaxRotationGrace)
	}
	return nil
}

// CheckRatePerMinute returns an error unless rate, a key's RatePerMinute
// (zero: none), is in range (keyward.CheckLimits).
func CheckRatePerMinute(rate int64) error {
	if err := keyward.CheckLimits(keyward.Limits{RequestsPerMinute: rate}); err != nil {
		return fmt.Errorf("keyward: %w", err)
	}
	return nil
}

// Check fills n's defaults (environment live) and returns every problem
// of it, joined: a name that is empty or breaks CheckText (at most
// MaxNameLen bytes), an unknown environment, an expiry or rate
// out of range (CheckKeyLifetime, CheckRatePerMinute), malformed
// permissions. KeyManager implementations call it
// before making a key.
func (n *KeySpec) Check() error {
	var errs []error
	if err := checkName("key", n.Name); err != nil {
		errs = append(errs, err)
	}
	if n.Environment == "" {
		n.Environment = keyward.EnvLive
	}
	if !n.Environment.Valid() {
		errs = append(errs, errors.New("keyward: environment must be live or test"))
	}
	if err := CheckKeyLifetime(n.ExpiresIn); err != nil {
		errs = append(errs, err)
	}
	if err := CheckRatePerMinute(n.RatePerMinute); err != nil {
		errs = append(errs, err)
	}
	if err := keyward.ValidatePermissions(n.Permissions); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// KeySpec describes a key to create.
type KeySpec struct {
	// OrgID is the owning organization. Required.
	OrgID string
	// Name labels the key. Required.
	Name string
	// Environment is live or test. Zero: live.
	Environment keyward.Environment
	// Permissions the key holds (resource:action, resource:*, *).
	Permissions []string
	// ExpiresIn is the key's lifetime; zero for none. At most
	// MaxKeyLifetime.
	ExpiresIn time.Duration
	// RatePerMinute is a per-key request limit when > 0. At most
	// keyward.MaxRatePerMinute.
	RatePerMinute int64
}

// CreatedKey is a key just made: the record, and the plaintext key, which
// is shown this once and kept nowhere.
type CreatedKey struct {
	// Key is the plaintext key.
	Key string
	// Record is the stored record.
	Record keyward.KeyRecord
}

// KeyChange describes changes to a key; a nil field is left as it is.
type KeyChange struct {
	// Name labels the key. Not empty.
	Name *string
	// Permissions replace the key's (resource:action, resource:*, *).
	Permissions *[]string
	// ExpiresIn is the key's lifetime from now; zero for none. At most
	// MaxKeyLifetime.
	ExpiresIn *time.Duration
}

// Check returns every problem of c, joined, by the rules of KeySpec.Check.
// KeyManager implementations call it before changing a key.
func (c KeyChange) Check() error {
	var errs []error
	if c.Name != nil {
		if err := checkName("key", *c.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ExpiresIn != nil {
		if err := CheckKeyLifetime(*c.ExpiresIn); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Permissions != nil {
		if err := keyward.ValidatePermissions(*c.Permissions); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// KeyInfo is a key with its place in a chain of rotations.
type KeyInfo struct {
	// Record is the stored record.
	Record keyward.KeyRecord
	// Predecessor is the id of the key this one was rotated from; empty
	// for a key CreateKey made.
	Predecessor string
	// Successor is the id of the key this one was rotated into; empty if
	// it was not rotated.
	Successor string
}

// MaxKeyPage bounds KeyQuery.Limit where a listing is answered to people
// (the admin API, a demo's usage route); DefaultKeyPage is their page when
// none is asked for.
const (
	MaxKeyPage     = 200
	DefaultKeyPage = 50
)

// KeyQuery selects a page of an organization's keys for ListKeys, newest
// first (then by id). Its zero value is every key. A page is continued by
// passing the id of its last key as After. Each filter's zero value
// selects every key; Selects is the rule, which every store keeps.
type KeyQuery struct {
	// Limit is the most keys returned. Zero (or less): no limit.
	Limit int
	// After is the id of a key of the organization: only keys listed
	// after it are returned. Zero: from the newest. A key that is not
	// the organization's is keyward.ErrKeyNotFound. After counts in the
	// listing's order whatever the filters: a page of a search continues
	// after its last key.
	After string
	// Search, when not empty, selects the keys whose name contains it,
	// ASCII letters matched without regard to case (other characters
	// exactly), or whose id or hint begins with it, exactly.
	Search string
	// Statuses, when not empty, selects the keys whose Status, at the
	// store's now, is one of them (StatusActive, …).
	Statuses []string
}

// A key's statuses, as Status names them.
const (
	StatusActive   = "active"
	StatusRotating = "rotating" // revoked at the end of a grace period still running
	StatusRevoked  = "revoked"
	StatusExpired  = "expired"
)

// MaxSearchLen bounds KeyQuery.Search, in bytes: a name's length.
const MaxSearchLen = MaxNameLen

// Check returns an error if q names a status that is not one of Status's
// or has a search that CheckText refuses (at most MaxSearchLen bytes).
func (q KeyQuery) Check() error {
	for _, st := range q.Statuses {
		switch st {
		case StatusActive, StatusRotating, StatusRevoked, StatusExpired:
		default:
			return fmt.Errorf("keyward: unknown key status %q: active, rotating, revoked or expired", st)
		}
	}
	return CheckText("search", q.Search, MaxSearchLen)
}

// Selects reports whether q's filters (Search, Statuses; not Limit and
// After) select k at now. memstore filters with it; sqlstore's query says
// the same in SQL, and keywardtest's suite holds both to it.
func (q KeyQuery) Selects(k *keyward.KeyRecord, now time.Time) bool {
	if len(q.Statuses) > 0 && !slices.Contains(q.Statuses, Status(k, now)) {
		return false
	}
	if q.Search == "" {
		return true
	}
	return strings.HasPrefix(k.ID, q.Search) || strings.HasPrefix(k.Hint, q.Search) ||
		strings.Contains(FoldASCII(k.Name), FoldASCII(q.Search))
}

// FoldASCII returns s with its ASCII capitals made small letters, and
// every other byte as it is: the case folding of KeyQuery.Search, the
// same in every store (a database's own folding of other letters depends
// on its locale).
func FoldASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// KeyManager creates and changes organizations and keys. memstore and
// sqlstore implement it with one contract:
//   - CreateKey and RotateKey return the plaintext once; only its hash and
//     hint are stored.
//   - RevokeKey takes effect at once and is idempotent; revoking an unknown
//     id is ErrKeyNotFound.
//   - RotateKey makes a new key with the old one's organization, name,
//     environment, permissions, rate and lifetime, and revokes the old key
//     at now+grace (at once for grace ≤ 0). Rotating a revoked key is
//     ErrKeyRevoked, an expired one ErrKeyExpired; a grace above MaxRotationGrace is refused
//     (CheckRotationGrace) and changes nothing. Rotating a key that is
//     not revoked but has a successor is ErrKeyRotated (wrapped, naming
//     the successor) and changes nothing, even when two rotations race:
//     a key has at most one successor. The new key records the old one
//     as its Predecessor, the old one the new one as its Successor.
//   - CreateKey, and RotateKey with a grace > 0, are refused with
//     ErrTooManyKeys (wrapped) when the organization has as many working
//     keys as the store's cap (DefaultMaxKeys unless configured), exactly,
//     even when creations race.
//   - ListKeys returns the organization's keys that q selects
//     (KeyQuery.Selects at the store's now), newest first (then by id),
//     at most q.Limit of them.
//   - Key returns a key by id with its predecessor and successor. An
//     orgID that is not empty confines it to that organization's keys:
//     another's key is ErrKeyNotFound, found as an absent one is (the
//     organization is part of the query, so that how long the lookup
//     takes tells nothing); an empty orgID finds any organization's key.
//     KeysByHint returns the keys, of every organization, whose hint is
//     the one given (newest first; none is no error).
//   - UpdateKey applies a KeyChange (checked by KeyChange.Check, which
//     refused changes nothing) and returns the record. An expiry is
//     counted from now. A revoked key is ErrKeyRevoked, an expired one
//     ErrKeyExpired (it is not brought back).
//   - DeleteOrg removes an organization and its keys, whose lookups are
//     then ErrKeyNotFound. While some of its keys still work (neither
//     revoked nor expired; a key in its rotation grace works) it is
//     refused with ErrOrgHasLiveKeys and changes nothing, unless force
//     is set. The credit ledger's history of the organization is kept.
//   - Unknown key ids are keyward.ErrKeyNotFound; unknown organization
//     ids are ErrOrgNotFound.
//   - Every change to a key or an organization is told to the watching
//     Invalidators before the call returns (for the instance that made it).
type KeyManager interface {
	CreateOrg(ctx context.Context, org OrgSpec) (keyward.Organization, error)
	Org(ctx context.Context, id string) (keyward.Organization, error)
	ListOrgs(ctx context.Context) ([]keyward.Organization, error)
	UpdateOrg(ctx context.Context, org keyward.Organization) error
	CreateKey(ctx context.Context, key KeySpec) (CreatedKey, error)
	ListKeys(ctx context.Context, orgID string, q KeyQuery) ([]keyward.KeyRecord, error)
	RevokeKey(ctx context.Context, keyID string) error
	RotateKey(ctx context.Context, keyID string, grace time.Duration) (CreatedKey, error)
	Key(ctx context.Context, orgID, keyID string) (KeyInfo, error)
	KeysByHint(ctx context.Context, hint string) ([]keyward.KeyRecord, error)
	UpdateKey(ctx context.Context, keyID string, change KeyChange) (keyward.KeyRecord, error)
	DeleteOrg(ctx context.Context, orgID string, force bool) error
}

// Status names what a key is at now: "revoked", "expired", "rotating"
// (revoked at the end of a grace period still running) or "active".
func Status(k *keyward.KeyRecord, now time.Time) string {
	switch {
	case k.Revoked(now):
		return StatusRevoked
	case k.Expired(now):
		return StatusExpired
	case !k.RevokedAt.IsZero():
		return StatusRotating
	}
	return StatusActive
}
