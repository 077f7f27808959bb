package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
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
	// pruned is the hour below which the hourly rows were last found all
	// deleted (pruneHours): the next prune is due when the cutoff passes it.
	pruned atomic.Int64
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
// t's UTC hour and outcome, with the credits it spent, to be written at the
// next flush (UsageByDay and UsageByHour read them).
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
// transaction: last-used times, and each key's calls by UTC day and by
// hour (hours older than usage.KeepHours are not written). Counts that fail
// to be written are kept for the next flush. Then, once an hour and after
// a flush that wrote, it deletes the hours older than usage.KeepHours, in
// batches of short statements that other writers wait for at most one
// batch of (a failure is logged, and tried again at the next such flush).
func (s *Store) FlushUsage(ctx context.Context) error {
	wrote, err := s.writeUsage(ctx)
	if err != nil || !wrote {
		return err // an idle store does not look for old hours either
	}
	if err := s.pruneHours(ctx); err != nil {
		s.logger.Warn("keyward: sqlstore: deleting old hourly usage failed; tried again at the next flush", "error", err)
	}
	return nil
}

// writeUsage writes the counts (FlushUsage) and reports whether there were any.
func (s *Store) writeUsage(ctx context.Context) (bool, error) {
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
		return false, nil
	}
	now := s.now()
	day := now.UTC().Unix() / 86400
	days, hours := byDayAndHour(outcomes, usage.HourNumber(now)-usage.KeepHours)
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
		// As above: a deleted organization's counts are dropped.
		if err := upsertCounts(ctx, tx, "keyward_key_usage", "day", days, func(c usage.Count) int64 { return c.Day }); err != nil {
			return err
		}
		return upsertCounts(ctx, tx, "keyward_key_usage_hourly", "hour", hours, func(c usage.Count) int64 { return c.Hour })
	})
	hooks.UsageFlushed(ctx, len(byKey)+len(byOrg), err)
	if err != nil {
		for _, t := range batch {
			t.u.n.Add(t.n) // try again next time
		}
		s.usage.outcomes.Restore(outcomes)
		return true, err
	}
	return true, nil
}

// byDayAndHour returns counts (a Counter's, by hour) summed by key, day
// and outcome, and by key, hour and outcome for the hours from keepFrom on:
// one figure per row each.
func byDayAndHour(counts []usage.Count, keepFrom int64) (days, hours []usage.Count) {
	type row struct {
		keyID   string
		n       int64 // day or hour
		hourly  bool
		outcome usage.Outcome
	}
	at := map[row]int{}
	add := func(to *[]usage.Count, r row, c usage.Count) {
		if i, ok := at[r]; ok {
			(*to)[i].Requests += c.Requests
			(*to)[i].Credits += c.Credits
			return
		}
		at[r] = len(*to)
		*to = append(*to, c)
	}
	for _, c := range counts {
		if c.Hour >= keepFrom {
			add(&hours, row{c.KeyID, c.Hour, true, c.Outcome}, c)
		}
		add(&days, row{c.KeyID, c.Day, false, c.Outcome}, c)
	}
	return days, hours
}

// upsertRows is how many rows one statement of upsertCounts writes (six
// parameters each, well within both engines' limits).
const upsertRows = 200

// upsertCounts adds counts to table, whose rows are keyed by key, column
// (the day or the hour: at) and outcome, upsertRows rows a statement; the
// rows of an organization that no longer exists are dropped.
func upsertCounts(ctx context.Context, tx *sql.Tx, table, column string, counts []usage.Count, at func(usage.Count) int64) error {
	for len(counts) > 0 {
		n := min(len(counts), upsertRows)
		var q strings.Builder
		args := make([]any, 0, 6*n)
		for i, c := range counts[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			p := 6 * i
			fmt.Fprintf(&q, "($%d, $%d, CAST($%d AS BIGINT), $%d, CAST($%d AS BIGINT), CAST($%d AS BIGINT))", p+1, p+2, p+3, p+4, p+5, p+6)
			args = append(args, c.OrgID, c.KeyID, at(c), c.Outcome.String(), c.Requests, c.Credits)
		}
		stmt := `INSERT INTO ` + table + ` (org_id, key_id, ` + column + `, outcome, requests, credits)
			SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6 FROM (VALUES ` + q.String() + `) AS v
			WHERE EXISTS (SELECT 1 FROM keyward_orgs WHERE id = v.column1)
			ON CONFLICT (key_id, ` + column + `, outcome) DO UPDATE SET requests = ` + table + `.requests + excluded.requests,
			credits = ` + table + `.credits + excluded.credits`
		if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {
			return err
		}
		counts = counts[n:]
	}
	return nil
}

// pruneBatch is how many hourly rows one statement of pruneHours deletes.
const pruneBatch = 1000

// pruneHours deletes the hourly rows older than usage.KeepHours, pruneBatch
// at a time (each statement its own transaction), when the hour has turned
// since it last found none left.
func (s *Store) pruneHours(ctx context.Context) error {
	cutoff := usage.HourNumber(s.now()) - usage.KeepHours
	if cutoff <= s.usage.pruned.Load() {
		return nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for {
		res, err := s.db.ExecContext(ctx, `DELETE FROM keyward_key_usage_hourly WHERE (key_id, hour, outcome) IN
			(SELECT key_id, hour, outcome FROM keyward_key_usage_hourly WHERE hour < $1 LIMIT `+strconv.Itoa(pruneBatch)+`)`, cutoff)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n < pruneBatch {
			s.usage.pruned.Store(cutoff)
			return nil
		}
	}
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

// UsageByHour implements usage.HourReader: an organization's flushed
// counts (or one key's, when keyID is not empty) for each UTC hour from
// from's to to's, oldest first; hours older than usage.KeepHours before the
// store's clock read as zeros, whether or not they are deleted yet.
func (s *Store) UsageByHour(ctx context.Context, orgID, keyID string, from, to time.Time) ([]usage.Hour, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	first := max(usage.HourNumber(from), usage.HourNumber(to)-usage.KeepHours+1, usage.HourNumber(s.now())-usage.KeepHours)
	q := `SELECT hour, outcome, SUM(requests), SUM(credits) FROM keyward_key_usage_hourly
		WHERE org_id = $1 AND hour BETWEEN $2 AND $3 AND ($4 = '' OR key_id = $4) GROUP BY hour, outcome`
	rows, err := s.db.QueryContext(ctx, q, orgID, first, usage.HourNumber(to), keyID)
	if err != nil {
		return nil, wrap("usage", err)
	}
	defer rows.Close()
	counts := map[int64]*usage.Hour{}
	for rows.Next() {
		var hour, n, credits int64
		var outcome string
		if err := rows.Scan(&hour, &outcome, &n, &credits); err != nil {
			return nil, wrap("usage", err)
		}
		o, _ := usage.ParseOutcome(outcome)
		h := counts[hour]
		if h == nil {
			h = &usage.Hour{}
			counts[hour] = h
		}
		h.Requests[o] += n
		h.Credits += credits
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("usage", err)
	}
	return usage.HourSeries(from, to, counts), nil
}

var _ usage.HourReader = (*Store)(nil)
