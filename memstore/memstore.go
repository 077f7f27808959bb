// Package memstore keeps organizations and keys in memory: a
// keyward.KeyStore and manage.KeyManager for tests, demos and servers of
// one process. Nothing survives a restart; use sqlstore for that.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/internal/nilness"
	"github.com/keyward/keyward/manage"
)

// Options configure a Store. Every zero value means the default said
// beside it.
type Options struct {
	// Prefix of the keys the store makes. Required (see
	// keyward.NewKeyFormat).
	Prefix string
	// Plans is the plan table organizations may name. Nil:
	// keyward.DefaultPlans().
	Plans *keyward.Plans
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// MaxKeys caps each organization's working keys (CreateKey, and
	// RotateKey with a grace, are refused at it with
	// manage.ErrTooManyKeys). Zero: manage.DefaultMaxKeys.
	MaxKeys int
}

// Store is an in-memory keyward.KeyStore and manage.KeyManager. Make one
// with New (the zero value is not usable). It is safe for concurrent use.
type Store struct {
	format  keyward.KeyFormat
	plans   *keyward.Plans
	now     func() time.Time
	maxKeys int

	mu       sync.RWMutex
	orgs     map[string]*keyward.Organization
	keys     map[string]*keyward.KeyRecord // by id
	byHash   map[keyward.KeyHash]*keyward.KeyRecord
	pred     map[string]string // key id → the key it was rotated from
	succ     map[string]string // key id → the key it was rotated into
	watchers []keyward.Invalidator

	found foundKeys // when LookupKey last found each key (RecentKeys)
}

var (
	_ keyward.KeyStore  = (*Store)(nil)
	_ manage.KeyManager = (*Store)(nil)
)

// New returns an empty Store.
func New(opts Options) (*Store, error) {
	format, err := keyward.NewKeyFormat(opts.Prefix)
	if err != nil {
		return nil, err
	}
	if opts.MaxKeys < 0 {
		return nil, &keyward.ConfigError{Field: "memstore.Options.MaxKeys", Problem: "is negative"}
	}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = manage.DefaultMaxKeys
	}
	plans := opts.Plans
	if plans == nil {
		plans = keyward.DefaultPlans()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Store{
		format:  format,
		plans:   plans,
		now:     now,
		maxKeys: opts.MaxKeys,
		orgs:    make(map[string]*keyward.Organization),
		keys:    make(map[string]*keyward.KeyRecord),
		byHash:  make(map[keyward.KeyHash]*keyward.KeyRecord),
		pred:    make(map[string]string),
		succ:    make(map[string]string),
	}, nil
}

// Watch makes the store tell inv of every change to a key or an
// organization, before the changing call returns. Pass the *keyward.Cache
// in front of this store; a nil inv is ignored.
func (s *Store) Watch(inv keyward.Invalidator) {
	if nilness.Is(inv) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchers = append(s.watchers, inv)
}

// Format returns the key format of the keys the store makes.
func (s *Store) Format() keyward.KeyFormat { return s.format }

// LookupKey implements keyward.KeyStore. The record is a copy, joined with
// the organization as it is now.
func (s *Store) LookupKey(ctx context.Context, hash keyward.KeyHash) (*keyward.KeyRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.byHash[hash]
	if !ok {
		return nil, keyward.ErrKeyNotFound
	}
	s.found.note(hash, s.now())
	rec := s.joined(k)
	return &rec, nil
}

// joined returns a copy of k with its organization; s.mu is held.
func (s *Store) joined(k *keyward.KeyRecord) keyward.KeyRecord {
	rec := *k
	rec.Permissions = slices.Clone(k.Permissions)
	rec.Org = *s.orgs[k.Org.ID]
	return rec
}

// CreateOrg implements manage.KeyManager.
func (s *Store) CreateOrg(ctx context.Context, n manage.OrgSpec) (keyward.Organization, error) {
	o, err := manage.NewOrg(ids.New("org_"), n, s.plans)
	if err != nil {
		return keyward.Organization{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orgs[o.ID] = &o
	return o, nil
}

// Org implements manage.KeyManager.
func (s *Store) Org(ctx context.Context, id string) (keyward.Organization, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.orgs[id]
	if !ok {
		return keyward.Organization{}, manage.ErrOrgNotFound
	}
	return *o, nil
}

// ListOrgs implements manage.KeyManager, ordered by name then id.
func (s *Store) ListOrgs(ctx context.Context) ([]keyward.Organization, error) {
	s.mu.RLock()
	out := make([]keyward.Organization, 0, len(s.orgs))
	for _, o := range s.orgs {
		out = append(out, *o)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b keyward.Organization) int {
		if a.Name != b.Name {
			return compare(a.Name, b.Name)
		}
		return compare(a.ID, b.ID)
	})
	return out, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// UpdateOrg implements manage.KeyManager: name, plan, rate, credits and
// overage take the values in o. Cached keys of the organization are
// invalidated.
func (s *Store) UpdateOrg(ctx context.Context, o keyward.Organization) error {
	if err := manage.CheckOrg(o, s.plans); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.orgs[o.ID]
	if !ok {
		return manage.ErrOrgNotFound
	}
	o.Limits, _ = s.plans.Resolve(o) // CheckOrg saw that it resolves
	*cur = o
	for _, k := range s.keys {
		if k.Org.ID == o.ID {
			s.notify(k.Hash)
		}
	}
	return nil
}

// notify tells every watcher that hash changed; s.mu is held.
func (s *Store) notify(h keyward.KeyHash) {
	for _, w := range s.watchers {
		w.Invalidate(h)
	}
}

// CreateKey implements manage.KeyManager.
func (s *Store) CreateKey(ctx context.Context, n manage.KeySpec) (manage.CreatedKey, error) {
	if err := n.Check(); err != nil {
		return manage.CreatedKey{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.orgs[n.OrgID]; !ok {
		return manage.CreatedKey{}, manage.ErrOrgNotFound
	}
	now := s.now()
	if err := s.checkRoom(n.OrgID, now); err != nil {
		return manage.CreatedKey{}, err
	}
	var expires time.Time
	if n.ExpiresIn > 0 {
		expires = now.Add(n.ExpiresIn)
	}
	return s.insert(n.OrgID, n.Name, n.Environment, n.Permissions, now, expires, n.RatePerMinute)
}

// working reports whether k works at now: neither revoked nor expired (a
// key in its rotation grace works).
func working(k *keyward.KeyRecord, now time.Time) bool { return !k.Revoked(now) && !k.Expired(now) }

// checkRoom returns manage.ErrTooManyKeys if organization orgID has as
// many working keys as the cap; s.mu is held (for writing), so that the
// count and the insert that follows are one step.
func (s *Store) checkRoom(orgID string, now time.Time) error {
	n := 0
	for _, k := range s.keys {
		if k.Org.ID == orgID && working(k, now) {
			n++
		}
	}
	if n >= s.maxKeys {
		return manage.TooManyKeys(s.maxKeys)
	}
	return nil
}

// insert makes and stores a new key; s.mu is held.
func (s *Store) insert(orgID, name string, env keyward.Environment, perms []string, now, expires time.Time, rate int64) (manage.CreatedKey, error) {
	plain, err := s.format.GenerateFor(env)
	if err != nil {
		return manage.CreatedKey{}, err
	}
	k := &keyward.KeyRecord{
		ID:            ids.New("key_"),
		Hash:          keyward.Hash(plain),
		Hint:          s.format.Hint(plain),
		Name:          name,
		Environment:   env,
		Permissions:   slices.Clone(perms),
		CreatedAt:     now,
		ExpiresAt:     expires,
		RatePerMinute: rate,
		Org:           keyward.Organization{ID: orgID},
	}
	s.keys[k.ID] = k
	s.byHash[k.Hash] = k
	// A hash nobody could have presented yet; told anyway so that a cached
	// "not found" never outlives the key's creation.
	s.notify(k.Hash)
	return manage.CreatedKey{Key: plain, Record: s.joined(k)}, nil
}

// ListKeys implements manage.KeyManager, newest first.
func (s *Store) ListKeys(ctx context.Context, orgID string, q manage.KeyQuery) ([]keyward.KeyRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.orgs[orgID]; !ok {
		return nil, manage.ErrOrgNotFound
	}
	var after *keyward.KeyRecord
	if q.After != "" {
		if after = s.keys[q.After]; after == nil || after.Org.ID != orgID {
			return nil, keyward.ErrKeyNotFound
		}
	}
	var page []*keyward.KeyRecord
	now := s.now()
	for _, k := range s.keys {
		if k.Org.ID == orgID && (after == nil || newerFirst(after, k) < 0) && q.Selects(k, now) {
			page = append(page, k)
		}
	}
	slices.SortFunc(page, newerFirst)
	if q.Limit > 0 && len(page) > q.Limit {
		page = page[:q.Limit]
	}
	out := make([]keyward.KeyRecord, 0, len(page))
	for _, k := range page {
		out = append(out, s.joined(k))
	}
	return out, nil
}

// newerFirst orders keys as listings do: newest first, then by id.
func newerFirst(a, b *keyward.KeyRecord) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return compare(a.ID, b.ID)
}

// sortNewestFirst sorts keys newest first, then by id.
func sortNewestFirst(keys []keyward.KeyRecord) {
	slices.SortFunc(keys, func(a, b keyward.KeyRecord) int { return newerFirst(&a, &b) })
}

// RevokeKey implements manage.KeyManager.
func (s *Store) RevokeKey(ctx context.Context, keyID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyID]
	if !ok {
		return keyward.ErrKeyNotFound
	}
	now := s.now()
	if !k.Revoked(now) {
		k.RevokedAt = now
	}
	s.notify(k.Hash)
	return nil
}

// RotateKey implements manage.KeyManager.
func (s *Store) RotateKey(ctx context.Context, keyID string, grace time.Duration) (manage.CreatedKey, error) {
	if err := manage.CheckRotationGrace(grace); err != nil {
		return manage.CreatedKey{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.keys[keyID]
	if !ok {
		return manage.CreatedKey{}, keyward.ErrKeyNotFound
	}
	now := s.now()
	if old.Revoked(now) {
		return manage.CreatedKey{}, manage.ErrKeyRevoked
	}
	if old.Expired(now) {
		return manage.CreatedKey{}, manage.ErrKeyExpired
	}
	if next, ok := s.succ[keyID]; ok {
		return manage.CreatedKey{}, rotatedInto(next)
	}
	if grace > 0 { // the old key keeps working beside the new one
		if err := s.checkRoom(old.Org.ID, now); err != nil {
			return manage.CreatedKey{}, err
		}
	}
	ck, err := s.insert(old.Org.ID, old.Name, old.Environment, old.Permissions, now, manage.SuccessorExpiry(old, now), old.RatePerMinute)
	if err != nil {
		return manage.CreatedKey{}, err
	}
	end := now
	if grace > 0 {
		end = now.Add(grace)
	}
	if old.RevokedAt.IsZero() || end.Before(old.RevokedAt) {
		old.RevokedAt = end
	}
	s.pred[ck.Record.ID], s.succ[keyID] = keyID, ck.Record.ID
	s.notify(old.Hash)
	return ck, nil
}

// rotatedInto is manage.ErrKeyRotated naming the successor.
func rotatedInto(next string) error {
	return fmt.Errorf("%w into %s: rotate that key instead", manage.ErrKeyRotated, next)
}

// Key implements manage.KeyManager.
func (s *Store) Key(ctx context.Context, orgID, keyID string) (manage.KeyInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[keyID]
	if !ok || (orgID != "" && k.Org.ID != orgID) {
		return manage.KeyInfo{}, keyward.ErrKeyNotFound
	}
	return manage.KeyInfo{Record: s.joined(k), Predecessor: s.pred[keyID], Successor: s.succ[keyID]}, nil
}

// KeysByHint implements manage.KeyManager.
func (s *Store) KeysByHint(ctx context.Context, hint string) ([]keyward.KeyRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []keyward.KeyRecord
	for _, k := range s.keys {
		if k.Hint == hint {
			out = append(out, s.joined(k))
		}
	}
	sortNewestFirst(out)
	return out, nil
}

// UpdateKey implements manage.KeyManager.
func (s *Store) UpdateKey(ctx context.Context, keyID string, c manage.KeyChange) (keyward.KeyRecord, error) {
	if err := c.Check(); err != nil {
		return keyward.KeyRecord{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyID]
	if !ok {
		return keyward.KeyRecord{}, keyward.ErrKeyNotFound
	}
	now := s.now()
	if k.Revoked(now) {
		return keyward.KeyRecord{}, manage.ErrKeyRevoked
	}
	if k.Expired(now) {
		return keyward.KeyRecord{}, manage.ErrKeyExpired
	}
	if c.Name != nil {
		k.Name = *c.Name
	}
	if c.Permissions != nil {
		k.Permissions = slices.Clone(*c.Permissions)
	}
	if c.ExpiresIn != nil {
		k.ExpiresAt = time.Time{}
		if *c.ExpiresIn > 0 {
			k.ExpiresAt = now.Add(*c.ExpiresIn)
		}
	}
	s.notify(k.Hash)
	return s.joined(k), nil
}

// DeleteOrg implements manage.KeyManager.
func (s *Store) DeleteOrg(ctx context.Context, orgID string, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.orgs[orgID]; !ok {
		return manage.ErrOrgNotFound
	}
	now := s.now()
	var keys []*keyward.KeyRecord
	live := 0
	for _, k := range s.keys {
		if k.Org.ID == orgID {
			keys = append(keys, k)
			if working(k, now) {
				live++
			}
		}
	}
	if live > 0 && !force {
		return fmt.Errorf("%w: %d; revoke them first, or delete with force", manage.ErrOrgHasLiveKeys, live)
	}
	for _, k := range keys {
		delete(s.keys, k.ID)
		delete(s.byHash, k.Hash)
		delete(s.pred, k.ID)
		delete(s.succ, k.ID)
		s.notify(k.Hash)
	}
	delete(s.orgs, orgID)
	return nil
}
