package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/manage"
)

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

const keyColumns = `k.id, k.hash, k.hint, k.name, k.environment, k.permissions, k.rate_per_minute,
	k.created_at, k.expires_at, k.revoked_at, k.last_used_at,
	o.id, o.name, o.plan, o.rate_per_minute, o.rate_per_second, o.concurrency, o.monthly_credits, o.allow_overage, o.burst`

const keyJoin = ` FROM keyward_keys k JOIN keyward_orgs o ON o.id = k.org_id `

type scanner interface{ Scan(dest ...any) error }

func (s *Store) scanKey(row scanner) (*keyward.KeyRecord, error) {
	var (
		rec                                   keyward.KeyRecord
		hash, env, perms                      string
		created, expires, revoked, used, over int64
	)
	err := row.Scan(&rec.ID, &hash, &rec.Hint, &rec.Name, &env, &perms, &rec.RatePerMinute,
		&created, &expires, &revoked, &used,
		&rec.Org.ID, &rec.Org.Name, &rec.Org.Plan, &rec.Org.RatePerMinute, &rec.Org.RatePerSecond, &rec.Org.Concurrency,
		&rec.Org.MonthlyCredits, &over, &rec.Org.Burst)
	if err != nil {
		return nil, err
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != len(rec.Hash) {
		return nil, fmt.Errorf("keyward: sqlstore: key %s has a corrupt hash", rec.ID)
	} else {
		copy(rec.Hash[:], b)
	}
	rec.Environment = keyward.Environment(env)
	if err := json.Unmarshal([]byte(perms), &rec.Permissions); err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: key %s has corrupt permissions: %w", rec.ID, err)
	}
	rec.CreatedAt, rec.ExpiresAt, rec.RevokedAt, rec.LastUsedAt = fromNanos(created), fromNanos(expires), fromNanos(revoked), fromNanos(used)
	rec.Org.AllowOverage = over != 0
	// An organization whose plan this store's table lacks gets no limits
	// here; the callers that can read the table again (resolveOrgs) do,
	// and if the plan is still unknown the handlers answer 500 naming the
	// misconfiguration.
	rec.Org.Limits, _ = s.Plans().Resolve(rec.Org)
	return &rec, nil
}

// LookupKey implements keyward.KeyStore.
func (s *Store) LookupKey(ctx context.Context, hash keyward.KeyHash) (*keyward.KeyRecord, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rec, err := s.scanKey(s.db.QueryRowContext(ctx, `SELECT `+keyColumns+keyJoin+`WHERE k.hash = $1`, hash.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, keyward.ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: lookup: %w", err)
	}
	s.resolveOrgs(ctx, &rec.Org)
	return rec, nil
}

// CreateKey implements manage.KeyManager.
func (s *Store) CreateKey(ctx context.Context, n manage.KeySpec) (manage.CreatedKey, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := n.Check(); err != nil {
		return manage.CreatedKey{}, err
	}
	now := s.now()
	var expires time.Time
	if n.ExpiresIn > 0 {
		expires = now.Add(n.ExpiresIn)
	}
	var ck manage.CreatedKey
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockOrg(ctx, tx, n.OrgID); err != nil {
			return err
		}
		org, err := s.scanOrg(tx.QueryRowContext(ctx, `SELECT `+orgColumns+` FROM keyward_orgs WHERE id = $1`, n.OrgID))
		if err != nil {
			return err
		}
		if err := s.checkRoom(ctx, tx, n.OrgID, now); err != nil {
			return err
		}
		ck, err = s.insertKey(ctx, tx, org, n.Name, n.Environment, n.Permissions, now, expires, n.RatePerMinute)
		return err
	})
	if err != nil {
		return manage.CreatedKey{}, wrap("create key", err)
	}
	s.notifyLocal(ck.Record.Hash.String())
	return ck, nil
}

// workingKey is the condition, at time $2, of a key that works: neither
// revoked nor expired (a key in its rotation grace works).
const workingKey = `(revoked_at = 0 OR revoked_at > $2) AND (expires_at = 0 OR expires_at > $2)`

// lockOrg locks organization orgID's row until tx ends, or returns
// manage.ErrOrgNotFound: on PostgreSQL FOR UPDATE, which waits for (and
// then blocks) another transaction that locked it, and a key being
// created for it (its foreign-key check holds FOR KEY SHARE, which an
// UPDATE's lock would not conflict with); on SQLite an update, which
// takes the database's write lock and so serialises every writer, of
// every process, from here on.
func (s *Store) lockOrg(ctx context.Context, tx *sql.Tx, orgID string) error {
	lock := `UPDATE keyward_orgs SET name = name WHERE id = $1 RETURNING id`
	if s.dialect == postgres {
		lock = `SELECT id FROM keyward_orgs WHERE id = $1 FOR UPDATE`
	}
	var id string
	if err := tx.QueryRowContext(ctx, lock, orgID).Scan(&id); errors.Is(err, sql.ErrNoRows) {
		return manage.ErrOrgNotFound
	} else if err != nil {
		return err
	}
	return nil
}

// checkRoom returns manage.ErrTooManyKeys if organization orgID, whose
// row tx has locked (lockOrg), has as many working keys as the cap: the
// lock makes the count and the insert after it one step, whatever other
// transactions do.
func (s *Store) checkRoom(ctx context.Context, tx *sql.Tx, orgID string, now time.Time) error {
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM keyward_keys WHERE org_id = $1 AND `+workingKey,
		orgID, nanos(now)).Scan(&n); err != nil {
		return err
	}
	if n >= int64(s.maxKeys) {
		return manage.TooManyKeys(s.maxKeys)
	}
	return nil
}

func (s *Store) insertKey(ctx context.Context, tx *sql.Tx, org keyward.Organization, name string, env keyward.Environment,
	perms []string, now, expires time.Time, rate int64) (manage.CreatedKey, error) {
	plain, err := s.format.GenerateFor(env)
	if err != nil {
		return manage.CreatedKey{}, err
	}
	if perms == nil {
		perms = []string{}
	}
	permJSON, err := json.Marshal(perms)
	if err != nil {
		return manage.CreatedKey{}, err
	}
	rec := keyward.KeyRecord{
		ID:            ids.New("key_"),
		Hash:          keyward.Hash(plain),
		Hint:          s.format.Hint(plain),
		Name:          name,
		Environment:   env,
		Permissions:   append([]string(nil), perms...),
		CreatedAt:     fromNanos(nanos(now)),
		ExpiresAt:     fromNanos(nanos(expires)),
		RatePerMinute: rate,
		Org:           org,
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO keyward_keys
		(id, org_id, hash, hint, name, environment, permissions, rate_per_minute, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		rec.ID, org.ID, rec.Hash.String(), rec.Hint, name, string(env), string(permJSON), rate, nanos(now), nanos(expires))
	if err != nil {
		return manage.CreatedKey{}, err
	}
	// A hash nobody could have presented yet; announced anyway so that a
	// cached "not found" never outlives the key's creation.
	if err := s.recordChanges(ctx, tx, rec.Hash.String()); err != nil {
		return manage.CreatedKey{}, err
	}
	return manage.CreatedKey{Key: plain, Record: rec}, nil
}

// ListKeys implements manage.KeyManager, newest first.
func (s *Store) ListKeys(ctx context.Context, orgID string, q manage.KeyQuery) ([]keyward.KeyRecord, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.Org(ctx, orgID); err != nil {
		return nil, err
	}
	where, args := `WHERE k.org_id = $1`, []any{orgID}
	if q.After != "" {
		var created int64
		err := s.db.QueryRowContext(ctx, `SELECT created_at FROM keyward_keys WHERE id = $1 AND org_id = $2`, q.After, orgID).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, keyward.ErrKeyNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("keyward: sqlstore: list keys: %w", err)
		}
		where += ` AND (k.created_at < $2 OR (k.created_at = $2 AND k.id > $3))`
		args = append(args, created, q.After)
	}
	w, a := s.keyFilter(q, len(args))
	where, args = where+w, append(args, a...)
	query := `SELECT ` + keyColumns + keyJoin + where + ` ORDER BY k.created_at DESC, k.id`
	if q.Limit > 0 {
		query += ` LIMIT ` + strconv.Itoa(q.Limit)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: list keys: %w", err)
	}
	defer rows.Close()
	var out []keyward.KeyRecord
	for rows.Next() {
		rec, err := s.scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("keyward: sqlstore: list keys: %w", err)
		}
		out = append(out, *rec)
	}
	return out, rows.Err()
}

// keyFilter is q's Search and Statuses as SQL (manage.KeyQuery.Selects
// in SQL): conditions to add to a WHERE clause with n arguments already,
// and their arguments. substr counts characters in both engines, as the
// search is compared whole; lower() folds ASCII letters only in SQLite
// and, with the C collation, in PostgreSQL, as manage.FoldASCII does.
func (s *Store) keyFilter(q manage.KeyQuery, n int) (string, []any) {
	var where string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(n+len(args))
	}
	if q.Search != "" {
		search, runes := arg(q.Search), arg(utf8.RuneCountInString(q.Search))
		folded := arg(manage.FoldASCII(q.Search))
		contains := `instr(lower(k.name), ` + folded + `) > 0`
		if s.dialect == postgres {
			contains = `strpos(lower(k.name COLLATE "C"), ` + folded + `) > 0`
		}
		where += ` AND (substr(k.id, 1, ` + runes + `) = ` + search + ` OR substr(k.hint, 1, ` + runes + `) = ` + search +
			` OR ` + contains + `)`
	}
	if len(q.Statuses) > 0 {
		const now = "$NOW"
		revoked := `(k.revoked_at <> 0 AND k.revoked_at <= ` + now + `)`
		expired := `(k.expires_at <> 0 AND k.expires_at <= ` + now + `)`
		var any []string
		for _, st := range q.Statuses {
			switch st { // as manage.Status decides, in its order
			case manage.StatusRevoked:
				any = append(any, revoked)
			case manage.StatusExpired:
				any = append(any, `(NOT `+revoked+` AND `+expired+`)`)
			case manage.StatusRotating:
				any = append(any, `(k.revoked_at > `+now+` AND NOT `+expired+`)`)
			case manage.StatusActive:
				any = append(any, `(k.revoked_at = 0 AND NOT `+expired+`)`)
			}
		}
		cond := "1 = 0" // only unknown statuses: none is selected
		if len(any) > 0 {
			cond = strings.ReplaceAll(strings.Join(any, " OR "), now, arg(nanos(s.now())))
		}
		where += ` AND (` + cond + `)`
	}
	return where, args
}

// RevokeKey implements manage.KeyManager.
func (s *Store) RevokeKey(ctx context.Context, keyID string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	now := nanos(s.now())
	var hash string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE keyward_keys SET revoked_at = $2
			WHERE id = $1 AND (revoked_at = 0 OR revoked_at > $2) RETURNING hash`, keyID, now).Scan(&hash)
		if errors.Is(err, sql.ErrNoRows) {
			// Unknown, or revoked already (idempotent).
			err = tx.QueryRowContext(ctx, `SELECT hash FROM keyward_keys WHERE id = $1`, keyID).Scan(&hash)
			if errors.Is(err, sql.ErrNoRows) {
				return keyward.ErrKeyNotFound
			}
			return err
		}
		if err != nil {
			return err
		}
		return s.recordChanges(ctx, tx, hash)
	})
	if err != nil {
		return wrap("revoke key", err)
	}
	s.notifyLocal(hash)
	return nil
}

// RotateKey implements manage.KeyManager.
func (s *Store) RotateKey(ctx context.Context, keyID string, grace time.Duration) (manage.CreatedKey, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := manage.CheckRotationGrace(grace); err != nil {
		return manage.CreatedKey{}, err
	}
	now := s.now()
	end := now
	if grace > 0 {
		end = now.Add(grace)
	}
	var ck manage.CreatedKey
	var oldHash string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var orgID string
		if grace > 0 { // the old key keeps working beside the new one: the cap's lock, first
			err := tx.QueryRowContext(ctx, `SELECT org_id FROM keyward_keys WHERE id = $1`, keyID).Scan(&orgID)
			if errors.Is(err, sql.ErrNoRows) {
				return keyward.ErrKeyNotFound
			}
			if err == nil {
				err = s.lockOrg(ctx, tx, orgID)
			}
			if err != nil {
				return err
			}
		}
		// One conditional update decides: the key exists, is not revoked
		// and has no successor. It also locks the row for the rest of the
		// transaction, so a racing rotation waits and then finds the
		// successor this one sets.
		res, err := tx.ExecContext(ctx, `UPDATE keyward_keys
			SET revoked_at = CASE WHEN revoked_at = 0 OR revoked_at > $3 THEN $3 ELSE revoked_at END
			WHERE id = $1 AND (revoked_at = 0 OR revoked_at > $2) AND successor = ''`, keyID, nanos(now), nanos(end))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return s.whyNotRotated(ctx, tx, keyID, now)
		}
		old, err := s.scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+keyJoin+`WHERE k.id = $1`, keyID))
		if err != nil {
			return err
		}
		if old.Expired(now) {
			return manage.ErrKeyExpired // and the update above is rolled back
		}
		if orgID != "" {
			if err := s.checkRoom(ctx, tx, orgID, now); err != nil {
				return err
			}
		}
		ck, err = s.insertKey(ctx, tx, old.Org, old.Name, old.Environment, old.Permissions, now, manage.SuccessorExpiry(old, now), old.RatePerMinute)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keyward_keys SET predecessor = $2 WHERE id = $1`, ck.Record.ID, keyID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keyward_keys SET successor = $2 WHERE id = $1`, keyID, ck.Record.ID); err != nil {
			return err
		}
		oldHash = old.Hash.String()
		return s.recordChanges(ctx, tx, oldHash)
	})
	if err != nil {
		return manage.CreatedKey{}, wrap("rotate key", err)
	}
	s.notifyLocal(oldHash, ck.Record.Hash.String())
	return ck, nil
}

// whyNotRotated tells why RotateKey's update changed no row: the key is
// unknown, revoked, or rotated already.
func (s *Store) whyNotRotated(ctx context.Context, tx *sql.Tx, keyID string, now time.Time) error {
	var revoked int64
	var next string
	err := tx.QueryRowContext(ctx, `SELECT revoked_at, successor FROM keyward_keys WHERE id = $1`, keyID).Scan(&revoked, &next)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return keyward.ErrKeyNotFound
	case err != nil:
		return err
	case revoked != 0 && revoked <= nanos(now):
		return manage.ErrKeyRevoked
	case next != "":
		return fmt.Errorf("%w into %s: rotate that key instead", manage.ErrKeyRotated, next)
	}
	return fmt.Errorf("keyward: sqlstore: key %s could not be rotated", keyID)
}

// Key implements manage.KeyManager.
func (s *Store) Key(ctx context.Context, orgID, keyID string) (manage.KeyInfo, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var info manage.KeyInfo
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The organization is in the query: another's key is not found as
		// fast as an absent one, never loaded and then refused.
		rec, err := s.scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+keyJoin+`WHERE k.id = $1 AND ($2 = '' OR k.org_id = $2)`,
			keyID, orgID))
		if errors.Is(err, sql.ErrNoRows) {
			return keyward.ErrKeyNotFound
		}
		if err != nil {
			return err
		}
		info.Record = *rec
		return tx.QueryRowContext(ctx, `SELECT predecessor, successor FROM keyward_keys WHERE id = $1`, keyID).
			Scan(&info.Predecessor, &info.Successor)
	})
	if err != nil {
		return manage.KeyInfo{}, wrap("key", err)
	}
	s.resolveOrgs(ctx, &info.Record.Org)
	return info, nil
}

// KeysByHint implements manage.KeyManager.
func (s *Store) KeysByHint(ctx context.Context, hint string) ([]keyward.KeyRecord, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT `+keyColumns+keyJoin+`WHERE k.hint = $1 ORDER BY k.created_at DESC, k.id`, hint)
	if err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: keys by hint: %w", err)
	}
	defer rows.Close()
	var out []keyward.KeyRecord
	for rows.Next() {
		rec, err := s.scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("keyward: sqlstore: keys by hint: %w", err)
		}
		out = append(out, *rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: keys by hint: %w", err)
	}
	_ = rows.Close() // before resolveOrgs: SQLite has one connection
	for i := range out {
		s.resolveOrgs(ctx, &out[i].Org)
	}
	return out, nil
}

// UpdateKey implements manage.KeyManager.
func (s *Store) UpdateKey(ctx context.Context, keyID string, c manage.KeyChange) (keyward.KeyRecord, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := c.Check(); err != nil {
		return keyward.KeyRecord{}, err
	}
	now := s.now()
	var rec *keyward.KeyRecord
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Lock the row first, so that what is read is what is changed.
		res, err := tx.ExecContext(ctx, `UPDATE keyward_keys SET name = name
			WHERE id = $1 AND (revoked_at = 0 OR revoked_at > $2)`, keyID, nanos(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var one int
			if err := tx.QueryRowContext(ctx, `SELECT 1 FROM keyward_keys WHERE id = $1`, keyID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
				return keyward.ErrKeyNotFound
			} else if err != nil {
				return err
			}
			return manage.ErrKeyRevoked
		}
		if rec, err = s.scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+keyJoin+`WHERE k.id = $1`, keyID)); err != nil {
			return err
		}
		if rec.Expired(now) {
			return manage.ErrKeyExpired
		}
		if c.Name != nil {
			rec.Name = *c.Name
		}
		if c.Permissions != nil {
			rec.Permissions = append([]string{}, *c.Permissions...)
		}
		if c.ExpiresIn != nil {
			rec.ExpiresAt = time.Time{}
			if *c.ExpiresIn > 0 {
				rec.ExpiresAt = fromNanos(nanos(now.Add(*c.ExpiresIn)))
			}
		}
		perms, err := json.Marshal(rec.Permissions)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keyward_keys SET name = $2, permissions = $3, expires_at = $4 WHERE id = $1`,
			keyID, rec.Name, string(perms), nanos(rec.ExpiresAt)); err != nil {
			return err
		}
		return s.recordChanges(ctx, tx, rec.Hash.String())
	})
	if err != nil {
		return keyward.KeyRecord{}, wrap("update key", err)
	}
	s.notifyLocal(rec.Hash.String())
	return *rec, nil
}
