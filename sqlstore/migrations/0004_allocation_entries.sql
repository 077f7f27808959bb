-- The ledger now records allocations too (kind 'allocation': the whole
-- allocation when a period starts, the increase when an upgrade raises
-- it), so that a period's balance rebuilds from its entries alone:
-- Σ allocation + Σ grant − Σ commit. Each account's current period gets
-- the entry it would have had, dated from the period's start.
INSERT INTO keyward_ledger (org_id, kind, amount, note, period_start, created_at)
    SELECT org_id, 'allocation', allocation, 'recorded by migration 0004: allocation ' || CAST(allocation AS TEXT),
        period_start, period_start
    FROM keyward_credit_accounts;
