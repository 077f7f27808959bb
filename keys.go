package keyward

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"regexp"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/strsum"
)

// Key layout, after the prefix: a base62 body of bodyLen characters drawn
// from crypto/rand (bodyLen·log2(62) ≈ 178 bits) followed by a checksum of
// checksumLen base62 characters: the CRC32 (IEEE) of prefix+body, left-padded
// with '0'. The layout is GitHub's token design.
const (
	bodyLen     = 30
	checksumLen = 6
	// maxPrefixLen bounds the prefix so that a whole key fits the fixed
	// stack buffer used for hashing.
	maxPrefixLen = 32
	// keyRunLen is the run of base62 characters that ends every key.
	keyRunLen = bodyLen + checksumLen
)

var errZeroKeyFormat = errors.New("keyward: zero KeyFormat; build one with NewKeyFormat")

// KeyHash is the SHA-256 of a whole presented key (prefix included). It is
// the only form in which a key is stored or looked up.
type KeyHash [sha256.Size]byte

// String returns the hash in lower-case hex.
func (h KeyHash) String() string { return hex.EncodeToString(h[:]) }

// KeyFormat generates and parses keys of one prefix. Test keys carry
// "test_" after it (triq_test_…): visibly not live, never valid as live
// keys, and rate-limited and charged apart. The zero value is not
// usable; build one with NewKeyFormat. It is safe for concurrent use.
type KeyFormat struct {
	prefix, test string // test: prefix + "test_", the prefix of test keys
	rand         io.Reader
}

// NewKeyFormat returns the format for keys that start with prefix, which
// must match [a-z0-9]+_ and be at most 32 bytes long (for example "triq_").
func NewKeyFormat(prefix string) (KeyFormat, error) {
	if err := checkPrefix(prefix); err != nil {
		return KeyFormat{}, err
	}
	return KeyFormat{prefix: prefix, test: prefix + "test_", rand: rand.Reader}, nil
}

var prefixPattern = regexp.MustCompile(`^[a-z0-9]+_$`)

func checkPrefix(prefix string) error {
	switch {
	case prefix == "":
		return &ConfigError{Field: "Prefix", Problem: "is empty; a prefix such as \"triq_\" is required"}
	case len(prefix) > maxPrefixLen:
		return &ConfigError{Field: "Prefix", Problem: "is longer than 32 bytes"}
	case !prefixPattern.MatchString(prefix):
		return &ConfigError{Field: "Prefix", Problem: "must match [a-z0-9]+_ (lower-case letters or digits, then one underscore)"}
	}
	return nil
}

// Prefix returns the prefix every key of this format starts with; test
// keys start with TestPrefix.
func (f KeyFormat) Prefix() string { return f.prefix }

// TestPrefix returns the prefix of test keys: Prefix followed by "test_".
func (f KeyFormat) TestPrefix() string { return f.test }

// Len returns the length in bytes of every well-formed live key; test keys
// are len("test_") longer.
func (f KeyFormat) Len() int { return len(f.prefix) + bodyLen + checksumLen }

// keyPrefix returns the prefix of key's environment: TestPrefix for a key
// that starts with it, Prefix otherwise.
func (f KeyFormat) keyPrefix(key string) string {
	if len(key) >= len(f.test) && key[:len(f.test)] == f.test {
		return f.test
	}
	return f.prefix
}

// Generate returns a new random live key: GenerateFor(EnvLive).
func (f KeyFormat) Generate() (string, error) { return f.GenerateFor(EnvLive) }

// GenerateFor returns a new random key of env. It fails only if the
// system's random source fails.
func (f KeyFormat) GenerateFor(env Environment) (string, error) {
	if f.prefix == "" {
		return "", errZeroKeyFormat
	}
	p := f.prefix
	if env == EnvTest {
		p = f.test
	}
	buf := make([]byte, len(p)+bodyLen+checksumLen)
	copy(buf, p)
	if err := base62Random(f.rand, buf[len(p):len(p)+bodyLen]); err != nil {
		return "", err
	}
	base62Put(buf[len(p)+bodyLen:], uint64(crc32.ChecksumIEEE(buf[:len(p)+bodyLen])))
	return string(buf), nil
}

// Valid reports whether key is a well-formed key of this format: prefix,
// length, alphabet and checksum, checked without any I/O. A valid key may
// still be unknown, revoked or expired: that is for the store to say.
// Scanners use it to find leaked keys without false positives.
func (f KeyFormat) Valid(key string) bool { return f.shaped(key) && f.checksumOK(key) }

// hasPrefix says whether key starts with f's prefix; a key that does not
// is refused as invalid_api_key_format.
func (f KeyFormat) hasPrefix(key string) bool {
	return f.prefix != "" && len(key) >= len(f.prefix) && key[:len(f.prefix)] == f.prefix
}

// shaped says whether key has f's prefix, a key's length and only base62
// characters after the prefix: everything but the checksum.
func (f KeyFormat) shaped(key string) bool {
	p := f.keyPrefix(key)
	return f.hasPrefix(key) && len(key) == len(p)+bodyLen+checksumLen && base62Only(key[len(p):])
}

// checksumOK says whether a shaped key's checksum matches its prefix and
// body.
func (f KeyFormat) checksumOK(key string) bool {
	n := len(f.keyPrefix(key)) + bodyLen
	want, _ := base62Decode(key[n:])
	return want <= 0xffffffff && uint32(want) == strsum.CRC32(key[:n])
}

// Hash returns the SHA-256 of key. Stores keep only this.
func Hash(key string) KeyHash { return strsum.SHA256(key) }

// Hint returns a display hint for a key: the prefix, the first four and the
// last four characters after it, for example "triq_AbCd…wXyZ". It reveals 8
// of the 36 characters after the prefix and is safe to show in listings and
// logs. A string too short to hint at is shown as prefix plus "…".
func (f KeyFormat) Hint(key string) string {
	p := f.keyPrefix(key)
	if len(key) < len(p)+12 || key[:len(p)] != p {
		return p + "…"
	}
	rest := key[len(p):]
	return p + rest[:4] + "…" + rest[len(rest)-4:]
}

// ErrKeyNotFound is what a KeyStore returns for a hash it does not know.
var ErrKeyNotFound = errors.New("keyward: key not found")

// Environment tells live keys from test keys.
type Environment string

// The two environments a key can belong to.
const (
	EnvLive Environment = "live"
	EnvTest Environment = "test"
)

// Valid reports whether e is EnvLive or EnvTest.
func (e Environment) Valid() bool { return e == EnvLive || e == EnvTest }

// Organization owns keys, a rate limit and credits.
type Organization struct {
	// ID identifies the organization; it is the rate-limit and credit
	// account.
	ID string
	// Name is for people.
	Name string
	// Plan names the organization's plan ("free", "starter", …).
	Plan string
	// RatePerMinute, RatePerSecond, Burst and Concurrency override the
	// plan's limits (Limits) each when > 0 (custom enterprise limits).
	RatePerMinute, RatePerSecond, Burst, Concurrency int64
	// MonthlyCredits overrides the plan's credit allocation when > 0.
	MonthlyCredits int64
	// AllowOverage lets calls go on when credits run out.
	AllowOverage bool
	// Limits are the organization's effective limits: what Plans.Resolve
	// makes of its plan and overrides. A KeyStore fills them; the rate
	// limiter and the charger read nothing else.
	Limits Limits
}

// KeyRecord is a stored key, joined with its organization. Only the key's
// hash is stored; the plaintext is not recoverable.
type KeyRecord struct {
	// ID identifies the key; it is not secret.
	ID string
	// Hash is the SHA-256 of the key.
	Hash KeyHash
	// Hint is a display form such as "triq_AbCd…wXyZ".
	Hint string
	// Name labels the key (production, development, ci, partner…).
	Name string
	// Environment is live or test.
	Environment Environment
	// Permissions the key holds, in resource:action form; "resource:*"
	// and "*" are wildcards.
	Permissions []string
	// CreatedAt is when the key was made.
	CreatedAt time.Time
	// ExpiresAt is when the key stops working; zero for never.
	ExpiresAt time.Time
	// RevokedAt is when the key was or will be revoked; zero for never. A
	// rotated key has RevokedAt at the end of its grace period.
	RevokedAt time.Time
	// LastUsedAt is the last time the key was seen, as recorded; zero
	// when unknown.
	LastUsedAt time.Time
	// RatePerMinute is a per-key request limit, applied on top of the
	// organization's when > 0.
	RatePerMinute int64
	// Org is the organization the key belongs to.
	Org Organization
}

// Revoked reports whether the key is revoked at now.
func (k *KeyRecord) Revoked(now time.Time) bool {
	return !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt)
}

// Expired reports whether the key has expired at now.
func (k *KeyRecord) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// KeyStore finds keys by hash. It is the only thing RequireAPIKey needs
// from storage.
//
// The contract:
//   - LookupKey returns the record for hash, joined with its organization
//     and the organization's Limits (Plans.Resolve of the store's plan
//     table), whether or not the key is revoked or expired (the caller
//     decides).
//   - For a hash it does not know it returns (nil, ErrKeyNotFound), and only
//     then: callers cache that answer.
//   - Any other error means the store failed; callers must not read it as
//     "no such key" (keyward answers 503, never 401).
//   - It honours ctx's cancellation and deadline.
//   - The record returned is the caller's: the store must not modify it
//     afterwards, and callers must not modify it either (the cache shares it).
//   - It is safe for concurrent use.
type KeyStore interface {
	LookupKey(ctx context.Context, hash KeyHash) (*KeyRecord, error)
}

// Invalidator is told of key changes so that cached copies are dropped.
// *Cache implements it; stores with a change feed call it.
type Invalidator interface {
	// Invalidate drops what is cached for one key hash.
	Invalidate(hash KeyHash)
	// InvalidateAll drops everything cached.
	InvalidateAll()
}

// UsageRecorder is told of every request RequireAPIKey lets through.
// RecordUse runs on the hot path: it must not block or do I/O;
// implementations count in memory and write in batches (sqlstore does).
type UsageRecorder interface {
	RecordUse(k *KeyRecord)
}

// Account returns the organization's credit policy, from its Limits.
func (o Organization) Account() credit.Account {
	return credit.Account{OrgID: o.ID, Allocation: o.Limits.MonthlyCredits, AllowOverage: o.AllowOverage}
}

// budget is the account k's calls are counted and charged in: its
// organization's, or for a test key the organization's test budget,
// "ORG:test" — the same limits and allocation, never overage, apart from
// the live ones.
func (k *KeyRecord) budget() (id string, acct credit.Account) {
	acct = k.Org.Account()
	if k.Environment == EnvTest {
		acct.OrgID, acct.AllowOverage = k.Org.ID+":test", false
	}
	return acct.OrgID, acct
}

// Account returns the credit account k's calls spend (see ChargeCredits):
// its organization's, or for a test key the organization's test account.
func (k *KeyRecord) Account() credit.Account {
	_, a := k.budget()
	return a
}
