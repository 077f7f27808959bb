package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/manage"
)

// Organizations: made, read, updated and deleted.

// CreateOrg implements manage.KeyManager.
func (s *Store) CreateOrg(ctx context.Context, n manage.OrgSpec) (keyward.Organization, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	s.knowPlan(ctx, n.Plan)
	o, err := manage.NewOrg(ids.New("org_"), n, s.Plans())
	if err != nil {
		return keyward.Organization{}, err
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.checkOrgPlan(ctx, tx, o); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO keyward_orgs
			(id, name, plan, rate_per_minute, rate_per_second, concurrency, monthly_credits, allow_overage, created_at, burst)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			o.ID, o.Name, o.Plan, o.RatePerMinute, o.RatePerSecond, o.Concurrency, o.MonthlyCredits, boolInt(o.AllowOverage), nanos(s.now()), o.Burst)
		return err
	})
	var r refusal
	if errors.As(err, &r) {
		return keyward.Organization{}, r.error
	}
	if err != nil {
		return keyward.Organization{}, fmt.Errorf("keyward: sqlstore: create org: %w", err)
	}
	return o, nil
}

const orgColumns = `id, name, plan, rate_per_minute, rate_per_second, concurrency, monthly_credits, allow_overage, burst`

func (s *Store) scanOrg(row scanner) (keyward.Organization, error) {
	var o keyward.Organization
	var over int64
	err := row.Scan(&o.ID, &o.Name, &o.Plan, &o.RatePerMinute, &o.RatePerSecond, &o.Concurrency, &o.MonthlyCredits, &over, &o.Burst)
	o.AllowOverage = over != 0
	o.Limits, _ = s.Plans().Resolve(o)
	return o, err
}

// Org implements manage.KeyManager.
func (s *Store) Org(ctx context.Context, id string) (keyward.Organization, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	o, err := s.scanOrg(s.db.QueryRowContext(ctx, `SELECT `+orgColumns+` FROM keyward_orgs WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return keyward.Organization{}, manage.ErrOrgNotFound
	}
	if err != nil {
		return keyward.Organization{}, fmt.Errorf("keyward: sqlstore: org: %w", err)
	}
	s.resolveOrgs(ctx, &o)
	return o, nil
}

// ListOrgs implements manage.KeyManager, ordered by name then id.
func (s *Store) ListOrgs(ctx context.Context) ([]keyward.Organization, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT `+orgColumns+` FROM keyward_orgs ORDER BY name, id`)
	if err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: list orgs: %w", err)
	}
	defer rows.Close()
	var out []keyward.Organization
	for rows.Next() {
		o, err := s.scanOrg(rows)
		if err != nil {
			return nil, fmt.Errorf("keyward: sqlstore: list orgs: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: list orgs: %w", err)
	}
	_ = rows.Close() // before resolveOrgs: SQLite has one connection
	for i := range out {
		s.resolveOrgs(ctx, &out[i])
	}
	return out, nil
}

// UpdateOrg implements manage.KeyManager: name, plan, rate, credits and
// overage take the values in o, and every key of the organization is
// announced on the change feed.
func (s *Store) UpdateOrg(ctx context.Context, o keyward.Organization) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	s.knowPlan(ctx, o.Plan)
	if err := manage.CheckOrg(o, s.Plans()); err != nil {
		return err
	}
	var hashes []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.checkOrgPlan(ctx, tx, o); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE keyward_orgs SET name = $2, plan = $3, rate_per_minute = $4,
			rate_per_second = $5, concurrency = $6, monthly_credits = $7, allow_overage = $8, burst = $9 WHERE id = $1`,
			o.ID, o.Name, o.Plan, o.RatePerMinute, o.RatePerSecond, o.Concurrency, o.MonthlyCredits, boolInt(o.AllowOverage), o.Burst)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return manage.ErrOrgNotFound
		}
		rows, err := tx.QueryContext(ctx, `SELECT hash FROM keyward_keys WHERE org_id = $1`, o.ID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				return err
			}
			hashes = append(hashes, h)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return s.recordChanges(ctx, tx, hashes...)
	})
	var r refusal
	if errors.As(err, &r) {
		return r.error
	}
	if err != nil {
		return wrap("update org", err)
	}
	s.notifyLocal(hashes...)
	return nil
}

// DeleteOrg implements manage.KeyManager. The organization's usage rows
// go with it; its credit account and ledger entries are kept as history.
func (s *Store) DeleteOrg(ctx context.Context, orgID string, force bool) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	now := nanos(s.now())
	var hashes []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Lock the organization's row while its keys are counted, so that
		// no key is created for it meanwhile.
		if err := s.lockOrg(ctx, tx, orgID); err != nil {
			return err
		}
		var live int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM keyward_keys WHERE org_id = $1 AND `+workingKey,
			orgID, now).Scan(&live); err != nil {
			return err
		}
		if live > 0 && !force {
			return fmt.Errorf("%w: %d; revoke them first, or delete with force", manage.ErrOrgHasLiveKeys, live)
		}
		rows, err := tx.QueryContext(ctx, `SELECT hash FROM keyward_keys WHERE org_id = $1`, orgID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return err
			}
			hashes = append(hashes, h)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM keyward_keys WHERE org_id = $1`,
			`DELETE FROM keyward_usage WHERE org_id = $1`,
			`DELETE FROM keyward_key_usage WHERE org_id = $1`,
			`DELETE FROM keyward_key_usage_hourly WHERE org_id = $1`,
			`DELETE FROM keyward_orgs WHERE id = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, orgID); err != nil {
				return err
			}
		}
		return s.recordChanges(ctx, tx, hashes...)
	})
	if err != nil {
		return wrap("delete org", err)
	}
	s.notifyLocal(hashes...)
	return nil
}
