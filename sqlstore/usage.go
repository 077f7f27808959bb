package sqlstore

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/telemetry"
)

// usageBuffer counts requests per key in memory between flushes. A key's
// counter is created once and then only incremented atomically: recording
// costs a map read and an atomic add, no lock.
type usageBuffer struct {
	keys sync.Map // key id → *keyUsage
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
	v, ok := s.usage.keys.Load(k.ID)
	if !ok {
		v, _ = s.usage.keys.LoadOrStore(k.ID, &keyUsage{orgID: k.Org.ID})
	}
	v.(*keyUsage).n.Add(1)
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
	s.usage.keys.Range(func(k, v any) bool {
		u := v.(*keyUsage)
		if n := u.n.Swap(0); n > 0 {
			batch = append(batch, taken{u, n})
			byKey[k.(string)] = n
			byOrg[u.orgID] += n
		}
		return true
	})
	if len(batch) == 0 {
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
		return nil
	})
	telemetry.UsageFlushed(ctx, len(byKey)+len(byOrg), err)
	if err != nil {
		for _, t := range batch {
			t.u.n.Add(t.n) // try again next time
		}
		return err
	}
	return nil
}

// Usage returns an organization's recorded request count for the UTC day
// that contains t (flushed counts only).
func (s *Store) Usage(ctx context.Context, orgID string, t time.Time) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(requests), 0) FROM keyward_usage WHERE org_id = $1 AND day = $2`,
		orgID, t.UTC().Unix()/86400).Scan(&n)
	return n, err
}
