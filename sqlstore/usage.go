package sqlstore

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/usage"
)

// usageBuffer counts requests per key in memory between flushes. A key's
// counter is created once and then only incremented atomically: recording
// costs a map read and an atomic add, no lock.
type usageBuffer struct {
	keys     sync.Map // key id → *keyUsage
	outcomes usage.Counter
}

type keyUsage struct {
	orgID string
	n     atomic.Int64
}

func (u *usageBuffer) init() {}

// RecordUse implements keyward.UsageRecorder: it counts one request of
// k, to be written at the next flush (the key's last-used time becomes
// the flush time; the organization's request count for the UTC day grows).
func (s *Store) RecordUse(k *keyward.KeyRecord) {
	if k == nil {
		return
	}
	v, ok := s.usage.keys.Load(k.ID)
	if !ok {
		v, _ = s.usage.keys.LoadOrStore(k.ID, &keyUsage{orgID: k.Org.ID})
	}
	v.(*keyUsage).n.Add(1)
}

// RecordOutcome implements usage.Recorder: it counts one call of k by
// t's UTC day and outcome, with the credits it spent, to be written at the
// next flush (UsageByDay reads them).
func (s *Store) RecordOutcome(k *keyward.KeyRecord, o usage.Outcome, credits int64, t time.Time) {
	s.usage.outcomes.RecordOutcome(k, o, credits, t)
}

// RecordCall implements keyward.CallRecorder, so that RequireAPIKey
// records each call with the store as its AuthConfig.Usage: RecordOutcome
// as usage.OutcomeOfCall counts the call.
func (s *Store) RecordCall(ctx context.Context, k *keyward.KeyRecord, sent int, t time.Time) {
	s.usage.outcomes.RecordCall(ctx, k, sent, t)
}

func (s *Store) flushLoop() {
	defer s.wg.Done()
	for s.sleep(s.flush) {
		ctx, cancel := context.WithTimeout(context.Background(), s.flush)
		if err := s.FlushUsage(ctx); err != nil {
			s.logger.Warn("keyward: sqlstore: writing usage failed; kept for the next flush", "error", err)
		}
		cancel()
	}
}

// FlushUsage writes the usage recorded since the last flush, in one
// transaction. Counts that fail to be written are kept for the next flush.
func (s *Store) FlushUsage(ctx context.Context) error {
	type taken struct {
		u *keyUsage
		n int64
	}
	var batch []taken
	byKey := map[string]int64{}
	byOrg := map[string]int64{}
	var dropped int64
	s.usage.keys.Range(func(k, v any) bool {
		u := v.(*keyUsage)
		if !storable(k.(string)) || !storable(u.orgID) {
			s.usage.keys.Delete(k)
			dropped += u.n.Swap(0)
			return true
		}
		if n := u.n.Swap(0); n > 0 {
			batch = append(batch, taken{u, n})
			byKey[k.(string)] = n
			byOrg[u.orgID] += n
		}
		return true
	})
	outcomes := s.usage.outcomes.Take()
	outcomes = slices.DeleteFunc(outcomes, func(c usage.Count) bool {
		if storable(c.KeyID) && storable(c.OrgID) {
			return false
		}
		dropped += c.Requests
		return true
	})
	if dropped > 0 {
		// Counts of records no store made (a hand-made KeyRecord): no row
		// can hold them, and kept they would fail every flush after this.
		s.logger.Warn("keyward: sqlstore: usage of ids no key or organization can have was dropped", "requests", dropped)
	}
	if len(batch) == 0 && len(outcomes) == 0 {
		return nil
	}
	now := s.now()
	day := now.UTC().Unix() / 86400
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for id := range byKey {
			if _, err := tx.ExecContext(ctx, `UPDATE keyward_keys SET last_used_at = $2 WHERE id = $1 AND last_used_at < $2`,
				id, nanos(now)); err != nil {
				return err
			}
		}
		for org, n := range byOrg {
			// An organization deleted since its requests were counted has
			// no row to count them in: its counts are dropped, not retried.
			if _, err := tx.ExecContext(ctx, `INSERT INTO keyward_usage (org_id, day, requests)
				SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM keyward_orgs WHERE id = $1)
				ON CONFLICT (org_id, day) DO UPDATE SET requests = keyward_usage.requests + excluded.requests`,
				org, day, n); err != nil {
				return err
			}
		}
		for _, c := range outcomes {
			// As above: a deleted organization's counts are dropped.
			if _, err := tx.ExecContext(ctx, `INSERT INTO keyward_key_usage (org_id, key_id, day, outcome, requests, credits)
				SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM keyward_orgs WHERE id = $1)
				ON CONFLICT (key_id, day, outcome) DO UPDATE SET requests = keyward_key_usage.requests + excluded.requests,
				credits = keyward_key_usage.credits + excluded.credits`,
				c.OrgID, c.KeyID, c.Day, c.Outcome.String(), c.Requests, c.Credits); err != nil {
				return err
			}
		}
		return nil
	})
	hooks.UsageFlushed(ctx, len(byKey)+len(byOrg), err)
	if err != nil {
		for _, t := range batch {
			t.u.n.Add(t.n) // try again next time
		}
		s.usage.outcomes.Restore(outcomes)
		return err
	}
	return nil
}

// storable reports whether id can be written to the database at all
// (PostgreSQL refuses text with NUL or invalid UTF-8): an id this store
// made always can.
func storable(id string) bool { return utf8.ValidString(id) && !strings.ContainsRune(id, 0) }

// Usage returns an organization's recorded request count for the UTC day
// that contains t (flushed counts only).
func (s *Store) Usage(ctx context.Context, orgID string, t time.Time) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(requests), 0) FROM keyward_usage WHERE org_id = $1 AND day = $2`,
		orgID, t.UTC().Unix()/86400).Scan(&n)
	return n, err
}

// UsageByDay implements usage.Reader: an organization's flushed counts
// (or one key's, when keyID is not empty) for each UTC day from from's to
// to's, oldest first.
func (s *Store) UsageByDay(ctx context.Context, orgID, keyID string, from, to time.Time) ([]usage.Day, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	q := `SELECT day, outcome, SUM(requests), SUM(credits) FROM keyward_key_usage
		WHERE org_id = $1 AND day BETWEEN $2 AND $3 AND ($4 = '' OR key_id = $4) GROUP BY day, outcome`
	rows, err := s.db.QueryContext(ctx, q, orgID, usage.DayNumber(from), usage.DayNumber(to), keyID)
	if err != nil {
		return nil, wrap("usage", err)
	}
	defer rows.Close()
	counts := map[int64]*usage.Day{}
	for rows.Next() {
		var day, n, credits int64
		var outcome string
		if err := rows.Scan(&day, &outcome, &n, &credits); err != nil {
			return nil, wrap("usage", err)
		}
		o, _ := usage.ParseOutcome(outcome)
		d := counts[day]
		if d == nil {
			d = &usage.Day{}
			counts[day] = d
		}
		d.Requests[o] += n
		d.Credits += credits
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("usage", err)
	}
	return usage.Series(from, to, counts), nil
}
