package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
)

// The plan table. Unless Options.Plans gives one, it is the database's
// keyward_plans, which every instance reads:
//
//   - at Open;
//   - at once when an organization names a plan it does not know (a plan
//     added by another instance), at most once a second for each name;
//   - when the change feed (running once Watch is called) reports a plan
//     changed by SetPlan or DeletePlan: within milliseconds on PostgreSQL,
//     within PollInterval on SQLite;
//   - and in any case every PlanInterval (5 s by default).
//
// When a reload finds the table changed, the watchers' caches are
// dropped, so that cached keys take the new limits too.

// planFeedMarker is the change-feed entry of a plan change: not a key
// hash, so instances that predate the plan table ignore it.
const planFeedMarker = "plans"

// missReloadEvery bounds reloads for one unknown plan name.
const missReloadEvery = time.Second

// DefaultPlanInterval is the PlanInterval of a zero Options.
const DefaultPlanInterval = 5 * time.Second

// ErrPlansFromCode is returned by SetPlan and DeletePlan when the plan
// table is given by code (Options.Plans): the database's table is not
// used, so changing it would change nothing.
var ErrPlansFromCode = errors.New("keyward: sqlstore: the plan table is given by code (sqlstore.Options.Plans), not kept in the database; change it in the code")

// ErrPlanNotFound is returned by DeletePlan for a plan the table does not
// have.
var ErrPlanNotFound = errors.New("keyward: sqlstore: no such plan")

// PlanInUseError is DeletePlan's refusal: organizations are on the plan.
type PlanInUseError struct {
	// Plan is the plan's name.
	Plan string
	// Count is how many organizations are on it.
	Count int
	// Orgs are the IDs of the first few of them, sorted.
	Orgs []string
}

func (e *PlanInUseError) Error() string {
	more := ""
	if e.Count > len(e.Orgs) {
		more = fmt.Sprintf(" and %d more", e.Count-len(e.Orgs))
	}
	return fmt.Sprintf("keyward: sqlstore: plan %q is in use by %d organization(s) (%s%s); move them to another plan first",
		e.Plan, e.Count, strings.Join(e.Orgs, ", "), more)
}

// planState is the Store's plan table.
type planState struct {
	fixed bool // Options.Plans: authoritative, never reloaded
	every time.Duration
	cur   atomic.Pointer[keyward.Plans]

	mu     sync.Mutex // serialises reloads; guards rows and missed
	rows   []keyward.Plan
	missed map[string]time.Time
}

// Plans returns the plan table the store resolves organizations' limits
// with: Options.Plans, or the database's as last read. Code that needs
// the table (manage.CheckOrg, manage.NewOrg) should pass this one.
func (s *Store) Plans() *keyward.Plans { return s.plans.cur.Load() }

// PlansFromCode reports whether the plan table is Options.Plans (so
// SetPlan and DeletePlan refuse) rather than the database's.
func (s *Store) PlansFromCode() bool { return s.plans.fixed }

// initPlans sets the table up at Open: the code's, or the database's,
// read now and then every PlanInterval.
func (s *Store) initPlans(ctx context.Context, opts Options) error {
	if opts.Plans != nil {
		s.plans.fixed = true
		s.plans.cur.Store(opts.Plans)
		return nil
	}
	s.plans.every = opts.PlanInterval
	if s.plans.every <= 0 {
		s.plans.every = DefaultPlanInterval
	}
	s.plans.missed = make(map[string]time.Time)
	s.plans.mu.Lock()
	_, err := s.loadPlans(ctx)
	s.plans.mu.Unlock()
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go s.planLoop()
	return nil
}

// readPlans reads keyward_plans, sorted by name (bytewise, as
// keyward.Plans sorts, whatever the database's collation).
func (s *Store) readPlans(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]keyward.Plan, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, requests_per_second, requests_per_minute, burst, concurrency, monthly_credits
		FROM keyward_plans ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []keyward.Plan
	for rows.Next() {
		var p keyward.Plan
		if err := rows.Scan(&p.Name, &p.Limits.RequestsPerSecond, &p.Limits.RequestsPerMinute, &p.Limits.Burst,
			&p.Limits.Concurrency, &p.Limits.MonthlyCredits); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b keyward.Plan) int { return strings.Compare(a.Name, b.Name) })
	return out, rows.Err()
}

// loadPlans reads the database's table and makes it current; it reports
// whether it changed. A table keyward.NewPlans refuses (edited by hand) is
// an error, and the current one stays. s.plans.mu must be held.
func (s *Store) loadPlans(ctx context.Context) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.readPlans(ctx, s.db)
	if err != nil {
		return false, fmt.Errorf("keyward: sqlstore: reading the plan table: %w", err)
	}
	if s.plans.cur.Load() != nil && slices.Equal(rows, s.plans.rows) {
		return false, nil
	}
	t, err := keyward.NewPlans(rows...)
	if err != nil {
		return false, fmt.Errorf("keyward: sqlstore: the database's plan table (keyward_plans) is invalid: %w", err)
	}
	s.plans.rows = rows
	s.plans.cur.Store(t)
	return true, nil
}

// reloadPlans reads the table again and, if it changed, drops the
// watchers' caches.
func (s *Store) reloadPlans(ctx context.Context) error {
	if s.plans.fixed {
		return nil
	}
	s.plans.mu.Lock()
	changed, err := s.loadPlans(ctx)
	s.plans.mu.Unlock()
	if changed {
		s.invalidateAll()
	}
	return err
}

// planLoop reloads the table every PlanInterval.
func (s *Store) planLoop() {
	defer s.wg.Done()
	failing := false
	for s.sleep(s.plans.every) {
		err := s.reloadPlans(context.Background())
		if err != nil && !failing {
			s.logger.Warn("keyward: sqlstore: plan table reload failed; keeping the last one read", "error", err)
		}
		failing = err != nil
	}
}

// knowPlan reports whether the table has the plan named name, reading the
// database's table again first if it does not (at most once a second for
// each name): an organization on a plan another instance has just added
// gets its limits, not a 500. Call it with no rows or transaction open (a
// SQLite Store has one connection).
func (s *Store) knowPlan(ctx context.Context, name string) bool {
	if _, ok := s.Plans().Plan(name); ok || s.plans.fixed || name == "" {
		return ok
	}
	s.plans.mu.Lock()
	defer s.plans.mu.Unlock()
	if _, ok := s.Plans().Plan(name); ok { // another caller read it
		return true
	}
	now := time.Now()
	if last, ok := s.plans.missed[name]; ok && now.Sub(last) < missReloadEvery {
		return false
	}
	if len(s.plans.missed) >= 1024 {
		clear(s.plans.missed)
	}
	s.plans.missed[name] = now
	changed, err := s.loadPlans(ctx)
	if err != nil {
		s.logger.Warn("keyward: sqlstore: plan table reload failed", "plan", name, "error", err)
	}
	if changed {
		defer s.invalidateAll()
	}
	_, ok := s.Plans().Plan(name)
	return ok
}

// resolveOrgs fills each organization's Limits, reading the table again
// for a plan it does not know (knowPlan).
func (s *Store) resolveOrgs(ctx context.Context, orgs ...*keyward.Organization) {
	for _, o := range orgs {
		if _, ok := s.Plans().Plan(o.Plan); !ok && s.knowPlan(ctx, o.Plan) {
			o.Limits, _ = s.Plans().Resolve(*o)
		}
	}
}

// ListPlans returns the plan table, sorted by name: the database's, read
// now, or Options.Plans.
func (s *Store) ListPlans(ctx context.Context) ([]keyward.Plan, error) {
	if s.plans.fixed {
		return s.Plans().All(), nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.readPlans(ctx, s.db)
	if err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: list plans: %w", err)
	}
	return rows, nil
}

// SetPlan adds p to the database's plan table or changes the plan of that
// name, and announces the change to every instance. A new plan's name
// follows the rule of names (manage.CheckText, at most manage.MaxNameLen
// bytes). The table must stay valid (keyward.NewPlans: a name, limits in
// range), and every
// organization on the plan must still resolve (keyward.Plans.Resolve: a
// plan made custom needs each of them to set its own rate). It fails with
// ErrPlansFromCode when Options.Plans is set.
func (s *Store) SetPlan(ctx context.Context, p keyward.Plan) error {
	return s.changePlans(ctx, "set plan", func(tx *sql.Tx, rows []keyward.Plan) error {
		if !slices.ContainsFunc(rows, func(r keyward.Plan) bool { return r.Name == p.Name }) && p.Name != "" {
			// A new name, by the rule of names (a stored one is not judged
			// again, so that it can still be changed).
			if err := manage.CheckText("plan name", p.Name, manage.MaxNameLen); err != nil {
				return refusal{err}
			}
		}
		rows = slices.DeleteFunc(rows, func(r keyward.Plan) bool { return r.Name == p.Name })
		t, err := keyward.NewPlans(append(rows, p)...)
		if err != nil {
			return refusal{err}
		}
		orgs, err := s.orgsOnPlan(ctx, tx, p.Name)
		if err != nil {
			return err
		}
		var errs []error
		for _, o := range orgs {
			if _, err := t.Resolve(o); err != nil {
				errs = append(errs, fmt.Errorf("organization %s: %w", o.ID, err))
			}
		}
		if len(errs) > 0 {
			return refusal{fmt.Errorf("keyward: sqlstore: plan %q would leave organizations on it without limits: %w", p.Name, errors.Join(errs...))}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO keyward_plans (name, requests_per_second, requests_per_minute, burst, concurrency, monthly_credits)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET requests_per_second = excluded.requests_per_second,
			requests_per_minute = excluded.requests_per_minute, burst = excluded.burst, concurrency = excluded.concurrency,
			monthly_credits = excluded.monthly_credits`,
			p.Name, p.Limits.RequestsPerSecond, p.Limits.RequestsPerMinute, p.Limits.Burst, p.Limits.Concurrency, p.Limits.MonthlyCredits)
		return err
	})
}

// DeletePlan removes the plan named name from the database's table and
// announces the change to every instance. It is refused with a
// *PlanInUseError while an organization is on the plan, with
// ErrPlanNotFound for a plan the table does not have, when it is the last
// plan, and with ErrPlansFromCode when Options.Plans is set.
func (s *Store) DeletePlan(ctx context.Context, name string) error {
	return s.changePlans(ctx, "delete plan", func(tx *sql.Tx, rows []keyward.Plan) error {
		i := slices.IndexFunc(rows, func(r keyward.Plan) bool { return r.Name == name })
		if i < 0 {
			return refusal{fmt.Errorf("%w %q", ErrPlanNotFound, name)}
		}
		if _, err := keyward.NewPlans(slices.Delete(rows, i, i+1)...); err != nil {
			return refusal{fmt.Errorf("keyward: sqlstore: plan %q is the last one; a table needs a plan: %w", name, err)}
		}
		orgs, err := s.orgsOnPlan(ctx, tx, name)
		if err != nil {
			return err
		}
		if len(orgs) > 0 {
			e := &PlanInUseError{Plan: name, Count: len(orgs)}
			for _, o := range orgs[:min(len(orgs), 5)] {
				e.Orgs = append(e.Orgs, o.ID)
			}
			return refusal{e}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM keyward_plans WHERE name = $1`, name)
		return err
	})
}

// changePlans runs change in a transaction that holds the plan table's
// rows (PostgreSQL: locked; SQLite: the write lock), announces the change
// on the feed, and makes the new table current here.
func (s *Store) changePlans(ctx context.Context, what string, change func(*sql.Tx, []keyward.Plan) error) error {
	if s.plans.fixed {
		return ErrPlansFromCode
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.dialect == postgres {
			if _, err := tx.ExecContext(ctx, `LOCK TABLE keyward_plans IN SHARE ROW EXCLUSIVE MODE`); err != nil {
				return err
			}
		}
		rows, err := s.readPlans(ctx, tx)
		if err != nil {
			return err
		}
		if err := change(tx, rows); err != nil {
			return err
		}
		return s.recordChanges(ctx, tx, planFeedMarker)
	})
	var r refusal
	if errors.As(err, &r) {
		return r.error
	}
	if err != nil {
		return fmt.Errorf("keyward: sqlstore: %s: %w", what, err)
	}
	return s.reloadPlans(ctx)
}

// refusal is a change to the plan table refused for what it would do,
// returned as it is rather than as a database failure.
type refusal struct{ error }

// orgsOnPlan returns the organizations on the plan named name, by ID.
func (s *Store) orgsOnPlan(ctx context.Context, tx *sql.Tx, name string) ([]keyward.Organization, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+orgColumns+` FROM keyward_orgs WHERE plan = $1 ORDER BY id`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []keyward.Organization
	for rows.Next() {
		o, err := s.scanOrg(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// checkOrgPlan checks o against its plan as the database holds it, inside
// tx: a plan deleted, or made custom-rate, by another instance since this
// one last read the table cannot slip an organization through. On
// PostgreSQL it takes a lock on the plan table that waits for a plan
// change in progress (changePlans) and makes one wait for tx, so the
// check and the organization's write are one step for it. With a table
// from code it checks against that.
func (s *Store) checkOrgPlan(ctx context.Context, tx *sql.Tx, o keyward.Organization) error {
	if s.plans.fixed {
		if err := manage.CheckOrg(o, s.Plans()); err != nil {
			return refusal{err}
		}
		return nil
	}
	if s.dialect == postgres {
		if _, err := tx.ExecContext(ctx, `LOCK TABLE keyward_plans IN ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
	}
	rows, err := s.readPlans(ctx, tx)
	if err != nil {
		return err
	}
	table, err := keyward.NewPlans(rows...)
	if err != nil {
		return err
	}
	if err := manage.CheckOrg(o, table); err != nil {
		return refusal{err}
	}
	return nil
}
